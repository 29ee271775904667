#ifndef DSV3_WORKER_COMMON_KV_EVENT_LOG_H_
#define DSV3_WORKER_COMMON_KV_EVENT_LOG_H_

// A worker's prefix-cache events (names of KV blocks stored and evicted), kept for the
// WatchLoad streams: each stream gets everything once, then what changed since its
// previous report. The scheduler that owns the pool appends; the load watchers read.
//
// The log mirrors the set of names the pool holds, so a stream that starts late, or falls
// behind the bounded history, gets the whole set (reset) instead of deltas.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "dsv3/v1/worker.pb.h"
#include "engine/kv_block_allocator.h"

namespace dsv3::worker {

class KvEventLog {
 public:
  // History kept for deltas; a stream further behind gets a reset.
  explicit KvEventLog(size_t max_history = 1 << 16) : max_history_(max_history) {}

  void Append(const engine::KvBlockEvents& events) ABSL_LOCKS_EXCLUDED(mu_);
  // Fills `out` with what a stream at `*cursor` has not seen (0: a new stream) and moves
  // the cursor past it.
  void Collect(uint64_t* cursor, v1::KvCacheEvents* out) const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  const size_t max_history_;
  absl::flat_hash_set<uint64_t> names_ ABSL_GUARDED_BY(mu_);
  // (name, stored) in order; entry i has sequence number first_seq_ + i.
  std::vector<std::pair<uint64_t, bool>> history_ ABSL_GUARDED_BY(mu_);
  uint64_t first_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_KV_EVENT_LOG_H_
