#include "engine/load_progress.h"

#include <unistd.h>

#include <cstdio>
#include <utility>

namespace dsv3::engine {
namespace {

constexpr int64_t kQuietBelowBytes = int64_t{1} << 30;
constexpr auto kEvery = std::chrono::seconds(2);
constexpr auto kMinGap = std::chrono::milliseconds(250);
constexpr double kStep = 0.05;

double GB(int64_t bytes) { return static_cast<double>(bytes) / 1e9; }

}  // namespace

LoadProgress::LoadProgress(std::string label, int64_t total_bytes, int64_t total_tensors,
                           ProgressMode mode)
    : label_(std::move(label)), total_bytes_(total_bytes), total_tensors_(total_tensors) {
  const bool big = total_bytes >= kQuietBelowBytes;
  switch (mode) {
    case ProgressMode::kOff:
      break;
    case ProgressMode::kAlways:
      periodic_ = final_ = true;
      break;
    case ProgressMode::kAuto:
      final_ = big;
      periodic_ = big && ::isatty(STDERR_FILENO) == 1;
      break;
  }
  last_print_ = start_;
}

void LoadProgress::Add(int64_t bytes, int64_t tensors) {
  std::lock_guard<std::mutex> lock(mu_);
  bytes_ += bytes;
  tensors_ += tensors;
  if (!periodic_ || total_bytes_ <= 0) return;
  const auto now = Clock::now();
  const double fraction = static_cast<double>(bytes_) / static_cast<double>(total_bytes_);
  const bool due = now - last_print_ >= kEvery ||
                   (fraction - last_fraction_ >= kStep && now - last_print_ >= kMinGap);
  if (!due || bytes_ >= total_bytes_) return;  // the final line reports completion
  last_print_ = now;
  last_fraction_ = fraction;
  PrintLocked(/*final_line=*/false);
}

void LoadProgress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (final_) PrintLocked(/*final_line=*/true);
}

void LoadProgress::PrintLocked(bool final_line) {
  const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = secs > 0 ? GB(bytes_) / secs : 0.0;  // GB/s
  if (final_line) {
    std::fprintf(stderr, "dsv3: loaded %s: %.2f GB, %lld tensors in %.1f s (%.2f GB/s)\n",
                 label_.c_str(), GB(bytes_), static_cast<long long>(tensors_), secs, rate);
    return;
  }
  const double eta = rate > 0 ? GB(total_bytes_ - bytes_) / rate : 0.0;
  std::fprintf(
      stderr, "dsv3: loading %s: %.2f/%.2f GB (%.0f%%), %lld/%lld tensors, %.2f GB/s, ETA %.0f s\n",
      label_.c_str(), GB(bytes_), GB(total_bytes_),
      100.0 * static_cast<double>(bytes_) / static_cast<double>(total_bytes_),
      static_cast<long long>(tensors_), static_cast<long long>(total_tensors_), rate, eta);
}

}  // namespace dsv3::engine
