#ifndef DSV3_TESTS_SUPPORT_EVENTUALLY_H_
#define DSV3_TESTS_SUPPORT_EVENTUALLY_H_

// Polls a condition that background threads make true (a worker seen up, an event logged):
// true as soon as it holds, false if it still does not after `timeout`.

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dsv3::testing {

template <typename Fn>
bool Eventually(Fn done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_SUPPORT_EVENTUALLY_H_
