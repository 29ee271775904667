#ifndef DSV3_TRANSPORT_FLOAT_BUFFER_POOL_H_
#define DSV3_TRANSPORT_FLOAT_BUFFER_POOL_H_

// Reuses the all-to-all's large buffers (megabytes per MoE layer at prefill sizes): a fresh
// allocation of that size is fresh pages, and faulting them in as UCX writes the data costs
// as much as the transfer itself. Thread-safe; keeps at most `max_buffers` spare buffers.

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "experts/dispatch_plan.h"

namespace dsv3::transport {

class FloatBufferPool {
 public:
  explicit FloatBufferPool(size_t max_buffers = 16) : max_buffers_(max_buffers) {}

  // A buffer of `n` floats (contents unspecified): the smallest spare that holds them, so a
  // small request does not take the big buffer a big request needs next; else a new one.
  experts::FloatBuffer Take(size_t n) {
    experts::FloatBuffer b;
    {
      absl::MutexLock lock(&mu_);
      size_t fit = spare_.size();
      for (size_t i = 0; i < spare_.size(); ++i) {
        const size_t cap = spare_[i].capacity();
        if (cap >= n && (fit == spare_.size() || cap < spare_[fit].capacity())) fit = i;
      }
      if (fit < spare_.size()) {
        b = std::move(spare_[fit]);
        spare_[fit] = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    b.resize(n);
    return b;
  }

  // Keeps `b` for reuse; when full, in place of the smallest spare if `b` is larger.
  void Give(experts::FloatBuffer b) {
    if (b.capacity() == 0) return;
    absl::MutexLock lock(&mu_);
    if (spare_.size() < max_buffers_) {
      spare_.push_back(std::move(b));
      return;
    }
    size_t smallest = 0;
    for (size_t i = 1; i < spare_.size(); ++i) {
      if (spare_[i].capacity() < spare_[smallest].capacity()) smallest = i;
    }
    if (spare_[smallest].capacity() < b.capacity()) spare_[smallest] = std::move(b);
  }

 private:
  const size_t max_buffers_;
  absl::Mutex mu_;
  std::vector<experts::FloatBuffer> spare_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_FLOAT_BUFFER_POOL_H_
