#ifndef DSV3_ENGINE_LOAD_PROGRESS_H_
#define DSV3_ENGINE_LOAD_PROGRESS_H_

// Progress of a long checkpoint load on stderr: bytes and tensors made resident, rate, ETA.
// Throttled (a line every 2 s, or per 5% but at most 4 a second) and only on a terminal; when
// stderr is not a terminal only the final line is printed. Loads under 1 GiB print nothing
// unless forced. Thread-safe.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"

namespace dsv3::engine {

enum class ProgressMode {
  kAuto,    // as above
  kOff,     // nothing
  kAlways,  // every throttled line and the final one, whatever the size or stderr
};

class LoadProgress {
 public:
  LoadProgress(std::string label, int64_t total_bytes, int64_t total_tensors, ProgressMode mode);

  // Records more bytes/tensors done; may print a line.
  void Add(int64_t bytes, int64_t tensors);
  // Prints the final line (if this load reports at all). Idempotent.
  void Finish();

 private:
  void PrintLocked(bool final_line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  using Clock = std::chrono::steady_clock;
  const std::string label_;
  const int64_t total_bytes_;
  const int64_t total_tensors_;
  bool periodic_ = false;  // throttled lines
  bool final_ = false;     // a closing line
  const Clock::time_point start_ = Clock::now();
  std::mutex mu_;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t tensors_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_print_ ABSL_GUARDED_BY(mu_);
  double last_fraction_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_LOAD_PROGRESS_H_
