#include "worker_common/kv_event_log.h"

namespace dsv3::worker {

void KvEventLog::Append(const engine::KvBlockEvents& events) {
  if (events.stored.empty() && events.removed.empty()) return;
  absl::MutexLock lock(&mu_);
  for (uint64_t name : events.removed) {
    names_.erase(name);
    history_.emplace_back(name, false);
  }
  for (uint64_t name : events.stored) {
    names_.insert(name);
    history_.emplace_back(name, true);
  }
  if (history_.size() > max_history_) {
    // Drop the older half: streams that far behind get a reset.
    const size_t drop = history_.size() - max_history_ / 2;
    history_.erase(history_.begin(), history_.begin() + static_cast<ptrdiff_t>(drop));
    first_seq_ += drop;
  }
}

void KvEventLog::Collect(uint64_t* cursor, v1::KvCacheEvents* out) const {
  absl::MutexLock lock(&mu_);
  const uint64_t end = first_seq_ + history_.size();
  if (*cursor == 0 || *cursor < first_seq_) {
    out->set_reset(true);
    out->mutable_stored()->Reserve(static_cast<int>(names_.size()));
    for (uint64_t name : names_) out->add_stored(name);
  } else if (*cursor < end) {
    // The latest state of each name since the cursor.
    absl::flat_hash_map<uint64_t, bool> latest;
    for (uint64_t seq = *cursor; seq < end; ++seq) {
      const auto& [name, stored] = history_[seq - first_seq_];
      latest[name] = stored;
    }
    for (const auto& [name, stored] : latest) {
      if (stored) {
        out->add_stored(name);
      } else {
        out->add_removed(name);
      }
    }
  }
  *cursor = end;
}

size_t KvEventLog::size() const {
  absl::MutexLock lock(&mu_);
  return names_.size();
}

}  // namespace dsv3::worker
