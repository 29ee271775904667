#ifndef DSV3_TRANSPORT_EXPERT_DISPATCH_BUFFER_POOL_H_
#define DSV3_TRANSPORT_EXPERT_DISPATCH_BUFFER_POOL_H_

// Reuses the all-to-all's large buffers (megabytes per MoE layer at prefill sizes): a fresh
// allocation of that size is fresh pages, and faulting them in as UCX writes the data costs
// as much as the transfer itself. Thread-safe; keeps at most `max_buffers` spare buffers.

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "transport/expert_dispatch/dispatch_plan.h"

namespace dsv3::transport {

class FloatBufferPool {
 public:
  explicit FloatBufferPool(size_t max_buffers = 16) : max_buffers_(max_buffers) {}

  // A buffer of `n` floats (contents unspecified): a spare that holds them if any, else the
  // most recent spare (grown once, then reused), else a new one.
  FloatBuffer Take(size_t n) {
    FloatBuffer b;
    {
      absl::MutexLock lock(&mu_);
      size_t pick = spare_.size();
      for (size_t i = 0; i < spare_.size() && pick == spare_.size(); ++i) {
        if (spare_[i].capacity() >= n) pick = i;
      }
      if (pick == spare_.size() && !spare_.empty()) pick = spare_.size() - 1;
      if (pick < spare_.size()) {
        b = std::move(spare_[pick]);
        spare_[pick] = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    b.resize(n);
    return b;
  }

  void Give(FloatBuffer b) {
    if (b.capacity() == 0) return;
    absl::MutexLock lock(&mu_);
    if (spare_.size() < max_buffers_) spare_.push_back(std::move(b));
  }

 private:
  const size_t max_buffers_;
  absl::Mutex mu_;
  std::vector<FloatBuffer> spare_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_EXPERT_DISPATCH_BUFFER_POOL_H_
