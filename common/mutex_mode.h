#ifndef DSV3_COMMON_MUTEX_MODE_H_
#define DSV3_COMMON_MUTEX_MODE_H_

namespace dsv3 {

// Turns off absl::Mutex's deadlock detector for this process. Abseil enables it when the
// library was built without NDEBUG, as Debian's libabsl is: every Mutex::Lock then takes one
// process-wide spinlock to update a lock-order graph (and every Mutex destructor too). That
// serialises all threads on one lock, and a thread preempted while holding it (a niced
// compute thread) stalls every other. Measured in the router at 256 streams: 16% of its CPU
// in the detector's graph. Servers, the CLI and the benchmarks call this first thing; the
// tests keep the detector (it reports lock-order cycles).
void DisableMutexDeadlockDetection();

}  // namespace dsv3

#endif  // DSV3_COMMON_MUTEX_MODE_H_
