#ifndef DSV3_PREFILL_WORKER_DECODE_POOLS_H_
#define DSV3_PREFILL_WORKER_DECODE_POOLS_H_

// What each decode worker says of its own KV pool (WorkerStatus.GetInfo: the layout, the UCX
// worker address, rkey and base address), asked once per decode worker and kept. A Prefill's
// destination comes from whoever called Prefill; the prefill worker writes into it only when
// it matches the decode worker's own account (issue 16: a caller must not be able to point the
// prefill worker's one-sided writes at memory of its choosing). A mismatch is asked again
// once (the decode worker may have restarted at the same address), then refused with
// PERMISSION_DENIED. A decode worker that does not answer is ABORTED, as a failed transfer.

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsv3/v1/worker.pb.h"

namespace dsv3::prefill {

class DecodePools {
 public:
  // OK when `destination` is within what its decode worker (destination.decode_address)
  // says of its pool: the same layout, UCX worker, rkey and base address.
  absl::Status Check(const v1::KvDestination& destination);

 private:
  struct Known {
    v1::WorkerInfo info;
    absl::Time asked;
  };
  absl::StatusOr<v1::WorkerInfo> Ask(const std::string& address);
  static bool Matches(const v1::KvDestination& destination, const v1::WorkerInfo& info);

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Known> known_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::prefill

#endif  // DSV3_PREFILL_WORKER_DECODE_POOLS_H_
