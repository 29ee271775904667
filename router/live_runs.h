#ifndef DSV3_ROUTER_LIVE_RUNS_H_
#define DSV3_ROUTER_LIVE_RUNS_H_

// How many CompletionRuns exist. A run outlives its request while it settles what it holds on
// workers: it waits for its prefill call to end, then releases the decode lease no Decode
// took. A router that exits at its drain timeout waits (bounded) for the runs it cancelled,
// or their leases stay held on the decode worker until they expire. Shared by the runs, as
// their last gRPC callbacks may outlive the backend.

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dsv3::router {

class LiveRuns {
 public:
  void Add() {
    absl::MutexLock lock(&mu_);
    ++runs_;
  }
  void Remove() {
    absl::MutexLock lock(&mu_);
    --runs_;
  }
  // Whether none is left within `timeout`.
  bool WaitForNone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int64_t* runs) { return *runs == 0; }, &runs_),
                                timeout);
  }

 private:
  absl::Mutex mu_;
  int64_t runs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_LIVE_RUNS_H_
