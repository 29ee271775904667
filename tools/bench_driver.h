#ifndef DSV3_TOOLS_BENCH_DRIVER_H_
#define DSV3_TOOLS_BENCH_DRIVER_H_

// `dsv3 bench`'s arrival process: requests at a fixed concurrency (a new one starts when one
// ends) or as a Poisson process, bounded by a count and/or a duration, with progress on
// stderr; finished requests come back through ResultSink.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tools/bench_report.h"

namespace dsv3::tools::bench {

// Where finished requests go. Called on gRPC threads; must not block.
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual void Add(Result result) = 0;
};

class Driver final : public ResultSink {
 public:
  // `launch(index)` starts request `index`; it must call Add() exactly once, later.
  using Clock = std::chrono::steady_clock;
  static double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

  Driver(RunOptions options, std::function<void(int64_t)> launch)
      : options_(options), launch_(std::move(launch)) {}

  void Add(Result result) override {
    absl::MutexLock lock(&mu_);
    results_.push_back(std::move(result));
    --in_flight_;
    last_done_ = Clock::now();
  }

  // Runs the whole benchmark; returns the results and the wall time from the first request
  // to the last answer.
  std::vector<Result> Run(double* wall_seconds) {
    const bool poisson = options_.rate > 0;
    const int cap = poisson ? options_.concurrency : std::max(1, options_.concurrency);
    std::mt19937_64 rng(options_.seed);
    std::exponential_distribution<double> gap(poisson ? options_.rate : 1.0);
    start_ = last_progress_ = Clock::now();
    const Clock::time_point stop_sending =
        options_.duration > 0 ? start_ + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options_.duration))
                              : Clock::time_point::max();
    Clock::time_point next_arrival = start_;
    int64_t issued = 0;
    while (options_.requests == 0 || issued < options_.requests) {
      // Wait for the next arrival (Poisson) and a free slot (the cap), reporting progress.
      while (true) {
        const Clock::time_point now = Clock::now();
        if (now >= stop_sending) break;
        bool slot;
        {
          absl::MutexLock lock(&mu_);
          slot = cap == 0 || in_flight_ < cap;
        }
        if (slot && now >= next_arrival) break;
        Progress(/*final=*/false);
        // At the cap, a finishing request wakes us (WaitUntil); else the next arrival does.
        const Clock::time_point tick = now + std::chrono::milliseconds(100);
        WaitUntil(std::min({slot ? next_arrival : tick, stop_sending, tick}));
      }
      if (Clock::now() >= stop_sending) break;
      {
        absl::MutexLock lock(&mu_);
        ++in_flight_;
      }
      launch_(issued++);
      if (poisson) {
        next_arrival +=
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
      }
    }
    // Drain: every request has a deadline, so this ends.
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (in_flight_ == 0) break;
        mu_.AwaitWithTimeout(absl::Condition(
                                 +[](int* n) { return *n == 0; }, &in_flight_),
                             absl::Milliseconds(100));
        if (in_flight_ == 0) break;
      }
      Progress(/*final=*/false);
    }
    Progress(/*final=*/true);
    absl::MutexLock lock(&mu_);
    *wall_seconds = Seconds((results_.empty() ? Clock::now() : last_done_) - start_);
    return std::move(results_);
  }

 private:
  // Sleeps until `until`, or until a request finishes when at the cap.
  void WaitUntil(Clock::time_point until) {
    const absl::Duration d = absl::FromChrono(until - Clock::now());
    if (d <= absl::ZeroDuration()) return;
    absl::MutexLock lock(&mu_);
    struct Arg {
      int* in_flight;
      int at_entry;
    } arg{&in_flight_, in_flight_};
    // Wake early when a slot frees (a request ended).
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Arg* a) { return *a->in_flight < a->at_entry; }, &arg),
                         d);
  }

  // A bar on a terminal, else a line every 5 s (logs stay readable).
  void Progress(bool final) {
    const Clock::time_point now = Clock::now();
    const bool tty = isatty(STDERR_FILENO);
    if (!final && now - last_progress_ <
                      (tty ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000))) {
      return;
    }
    if (!tty && final) return;
    last_progress_ = now;
    int64_t done, errors;
    int in_flight;
    {
      absl::MutexLock lock(&mu_);
      done = static_cast<int64_t>(results_.size());
      errors = std::count_if(results_.begin(), results_.end(),
                             [](const Result& r) { return r.code != grpc::StatusCode::OK; });
      in_flight = in_flight_;
    }
    const double elapsed = Seconds(now - start_);
    double fraction = 0;
    if (options_.requests > 0) fraction = static_cast<double>(done) / options_.requests;
    if (options_.duration > 0) {
      fraction = std::max(
          fraction, std::min(1.0, elapsed / options_.duration) * (in_flight == 0 ? 1.0 : 0.99));
    }
    const std::string counts = absl::StrCat(
        done, options_.requests > 0 ? absl::StrCat("/", options_.requests) : "", " done, ",
        in_flight, " in flight, ", errors, " errors, ", absl::StrFormat("%.1f s", elapsed));
    if (!tty) {
      std::fprintf(stderr, "dsv3 bench: %s\n", counts.c_str());
      return;
    }
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(std::min(1.0, fraction) * kWidth);
    std::fprintf(stderr, "\r[%s%s] %3d%% %s\033[K%s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<int>(fraction * 100),
                 counts.c_str(), final ? "\n" : "");
  }

  const RunOptions options_;
  const std::function<void(int64_t)> launch_;
  Clock::time_point start_;
  Clock::time_point last_progress_{};
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Result> results_ ABSL_GUARDED_BY(mu_);
  Clock::time_point last_done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::tools::bench

#endif  // DSV3_TOOLS_BENCH_DRIVER_H_
