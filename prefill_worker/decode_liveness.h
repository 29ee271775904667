#ifndef DSV3_PREFILL_WORKER_DECODE_LIVENESS_H_
#define DSV3_PREFILL_WORKER_DECODE_LIVENESS_H_

// Whether a decode worker still answers, judged by the state of a gRPC channel to it (one
// per address, kept). UCX's shared-memory transports (1.13) notice no dead peer: a flush into
// a decode worker that was killed would wait out its whole timeout with the prefill loop
// blocked. The flush asks this every 100 ms instead (PutBatch::Flush), and gives up once the
// decode worker's gRPC port has refused connections for a few checks in a row.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace dsv3::prefill {

class DecodeLiveness {
 public:
  // One flush's view of one decode worker: Check() is its PutBatch::Flush `still_there`.
  class Probe {
   public:
    explicit Probe(std::shared_ptr<grpc::Channel> channel, std::string address)
        : channel_(std::move(channel)), address_(std::move(address)) {}
    // UNAVAILABLE after kFailuresInARow connection failures in a row.
    absl::Status Check();

   private:
    static constexpr int kFailuresInARow = 3;
    std::shared_ptr<grpc::Channel> channel_;
    std::string address_;
    int failures_ = 0;
  };

  Probe ProbeFor(const std::string& address);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::prefill

#endif  // DSV3_PREFILL_WORKER_DECODE_LIVENESS_H_
