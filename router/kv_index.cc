#include "router/kv_index.h"

namespace dsv3::router {

void KvIndex::Apply(const std::string& worker, const v1::KvCacheEvents& events) {
  if (!events.reset() && events.stored_size() == 0 && events.removed_size() == 0) return;
  absl::flat_hash_set<uint64_t>& names = names_[worker];
  if (events.reset()) names.clear();
  for (uint64_t name : events.removed()) names.erase(name);
  names.insert(events.stored().begin(), events.stored().end());
}

void KvIndex::Forget(const std::string& worker) { names_.erase(worker); }

int64_t KvIndex::Overlap(const std::string& worker, std::span<const uint64_t> names) const {
  auto it = names_.find(worker);
  if (it == names_.end()) return 0;
  int64_t n = 0;
  for (uint64_t name : names) {
    if (!it->second.contains(name)) break;
    ++n;
  }
  return n;
}

size_t KvIndex::size(const std::string& worker) const {
  auto it = names_.find(worker);
  return it == names_.end() ? 0 : it->second.size();
}

}  // namespace dsv3::router
