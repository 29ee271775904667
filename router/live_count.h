#ifndef DSV3_ROUTER_LIVE_COUNT_H_
#define DSV3_ROUTER_LIVE_COUNT_H_

// How many of something are still alive (CompletionRuns settling their leases, one-way
// notices awaiting their answers), and a bounded wait until none is: what a router exiting at
// its drain timeout waits for, or the leases its cancelled requests held stay held on the
// decode worker until they expire.

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dsv3::router {

class LiveCount {
 public:
  void Add() {
    absl::MutexLock lock(&mu_);
    ++count_;
  }
  void Remove() {
    absl::MutexLock lock(&mu_);
    --count_;
  }
  // Whether none is left within `timeout`.
  bool WaitForNone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int64_t* count) { return *count == 0; }, &count_),
                                timeout);
  }

 private:
  absl::Mutex mu_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_LIVE_COUNT_H_
