#include "engine/kv_block_allocator.h"

#include "absl/strings/str_cat.h"

namespace dsv3::engine {

KvBlockAllocator::KvBlockAllocator(int64_t num_blocks) : state_(static_cast<size_t>(num_blocks)) {
  free_.reserve(static_cast<size_t>(num_blocks));
  // Lowest ids on top of the stack.
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

void KvBlockAllocator::set_max_cached(int64_t max_cached) {
  max_cached_ = std::max<int64_t>(0, max_cached);
  while (max_cached_ > 0 && cached_ > max_cached_) EvictOne();
}

void KvBlockAllocator::LinkMru(int32_t b) {
  Block& s = state_[static_cast<size_t>(b)];
  s.prev = lru_tail_;
  s.next = -1;
  if (lru_tail_ >= 0) {
    state_[static_cast<size_t>(lru_tail_)].next = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
  ++cached_;
}

void KvBlockAllocator::Unlink(int32_t b) {
  Block& s = state_[static_cast<size_t>(b)];
  if (s.prev >= 0) {
    state_[static_cast<size_t>(s.prev)].next = s.next;
  } else {
    lru_head_ = s.next;
  }
  if (s.next >= 0) {
    state_[static_cast<size_t>(s.next)].prev = s.prev;
  } else {
    lru_tail_ = s.prev;
  }
  s.prev = s.next = -1;
  --cached_;
}

void KvBlockAllocator::EvictOne() {
  const int32_t b = lru_head_;
  if (b < 0) return;
  Unlink(b);
  Block& s = state_[static_cast<size_t>(b)];
  by_name_.erase(s.name);
  events_.emplace_back(s.name, false);
  s.named = false;
  s.name = 0;
  free_.push_back(b);
  ++evictions_;
}

absl::Status KvBlockAllocator::Allocate(int64_t count, std::vector<int32_t>& out) {
  if (count <= 0) return absl::OkStatus();
  if (count > available_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache pool full: ", count, " more blocks needed, ", free_blocks(),
                     " free and ", cached_blocks(), " cached of ", num_blocks()));
  }
  for (int64_t i = 0; i < count; ++i) {
    if (free_.empty()) EvictOne();
    const int32_t b = free_.back();
    free_.pop_back();
    state_[static_cast<size_t>(b)].refs = 1;
    out.push_back(b);
  }
  return absl::OkStatus();
}

int64_t KvBlockAllocator::CountMatching(std::span<const uint64_t> names) const {
  int64_t n = 0;
  for (uint64_t name : names) {
    if (!by_name_.contains(name)) break;
    ++n;
  }
  return n;
}

int64_t KvBlockAllocator::Match(std::span<const uint64_t> names, std::vector<int32_t>& out) {
  int64_t n = 0;
  for (uint64_t name : names) {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) break;
    const int32_t b = it->second;
    Block& s = state_[static_cast<size_t>(b)];
    if (s.refs == 0) Unlink(b);  // cached -> referenced
    ++s.refs;
    out.push_back(b);
    ++n;
  }
  return n;
}

void KvBlockAllocator::Name(int32_t b, uint64_t name) {
  if (!caching_) return;
  Block& s = state_[static_cast<size_t>(b)];
  if (s.named || s.refs <= 0) return;
  if (!by_name_.emplace(name, b).second) return;  // another block holds it
  s.named = true;
  s.name = name;
  events_.emplace_back(name, true);
}

void KvBlockAllocator::Release(std::span<const int32_t> blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const int32_t b = *it;
    Block& s = state_[static_cast<size_t>(b)];
    if (s.refs <= 0) continue;  // not held (a caller bug; never double-free)
    if (--s.refs > 0) continue;
    if (s.named && caching_) {
      LinkMru(b);
      if (max_cached_ > 0 && cached_ > max_cached_) EvictOne();
    } else {
      if (s.named) {
        by_name_.erase(s.name);
        events_.emplace_back(s.name, false);
        s.named = false;
      }
      free_.push_back(b);
    }
  }
}

KvBlockEvents KvBlockAllocator::TakeEvents() {
  // The latest state of each name wins (a name may be stored, evicted and stored again).
  absl::flat_hash_map<uint64_t, bool> latest;
  for (const auto& [name, stored] : events_) latest[name] = stored;
  KvBlockEvents out;
  for (const auto& [name, stored] : events_) {
    auto it = latest.find(name);
    if (it == latest.end()) continue;  // already emitted
    (it->second ? out.stored : out.removed).push_back(name);
    latest.erase(it);
  }
  events_.clear();
  return out;
}

std::vector<uint64_t> KvBlockAllocator::Names() const {
  std::vector<uint64_t> out;
  out.reserve(by_name_.size());
  for (const auto& [name, block] : by_name_) out.push_back(name);
  return out;
}

}  // namespace dsv3::engine
