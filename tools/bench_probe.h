#ifndef DSV3_TOOLS_BENCH_PROBE_H_
#define DSV3_TOOLS_BENCH_PROBE_H_

// `dsv3 bench --bench_probe ADDR`: while the benchmark runs, one thread calls WorkerStatus.GetInfo
// (a handler that does next to nothing) on ADDR every few milliseconds and records the round
// trips. It is the floor of one gRPC hop on this machine under the benchmark's own load: the
// router's overhead (TTFT minus the prefill worker's own time) holds a Prefill call's round
// trip to the prefill worker, so it cannot be below this probe's figures.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "dsv3/v1/worker.grpc.pb.h"

namespace dsv3::tools::bench {

class RttProbe {
 public:
  RttProbe(const std::string& address, absl::Duration interval);
  ~RttProbe();
  RttProbe(const RttProbe&) = delete;
  RttProbe& operator=(const RttProbe&) = delete;

  void Start();
  // Stops and returns the round trips of the calls that succeeded (seconds), and how many
  // failed.
  std::vector<double> Stop(int64_t* failures);

 private:
  std::unique_ptr<v1::WorkerStatus::Stub> stub_;
  const absl::Duration interval_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<double> rtts_;  // the probe thread's until Stop joins it
  int64_t failures_ = 0;
};

}  // namespace dsv3::tools::bench

#endif  // DSV3_TOOLS_BENCH_PROBE_H_
