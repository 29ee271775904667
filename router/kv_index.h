#ifndef DSV3_ROUTER_KV_INDEX_H_
#define DSV3_ROUTER_KV_INDEX_H_

// The router's view of which worker holds which KV blocks in its prefix cache, kept from
// the KvCacheEvents on each worker's WatchLoad stream. A prompt's overlap with a worker is
// the number of its leading block names (common/kv_block_hash.h) the worker holds: a chain
// counts only from its root, as the worker's own lookup does.
//
// Not thread-safe: the worker registry guards it with its own lock.

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "dsv3/v1/worker.pb.h"

namespace dsv3::router {

class KvIndex {
 public:
  // Applies one report's events of `worker`.
  void Apply(const std::string& worker, const v1::KvCacheEvents& events);
  // The worker is gone (or its stream broke: the next stream starts with a reset).
  void Forget(const std::string& worker);
  // Leading `names` that `worker` holds.
  int64_t Overlap(const std::string& worker, std::span<const uint64_t> names) const;
  // Names `worker` holds (0 for an unknown worker).
  size_t size(const std::string& worker) const;

 private:
  std::map<std::string, absl::flat_hash_set<uint64_t>> names_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_KV_INDEX_H_
