#include "engine/scratch.h"

#include <algorithm>

namespace dsv3::engine {
namespace {

// A site keeps a buffer up to this size between calls; a larger one (the expanded attention's
// keys and values of a long context: 128 KB a position at DeepSeek-V3's widths) is freed at the
// end of its call, as before.
constexpr size_t kKeepBytes = size_t{256} << 20;

// Smaller buffers (every decode step's) are allocated per call and zero-filled, as the
// std::vector they replace was: glibc serves them from its heap without page faults, so keeping
// them would save only the fill, and decode stays as it was measured.
constexpr size_t kReuseMinBytes = size_t{16} << 20;

}  // namespace

Scratch::Scratch(ScratchSite& site, size_t n) {
  n = std::max<size_t>(n, 1);
  if (n * sizeof(float) < kReuseMinBytes) {
    own_ = std::make_unique<float[]>(n);  // zero-filled
    data_ = own_.get();
    return;
  }
  if (site.taken_) {
    own_.reset(new float[n]);  // a nested use: not zero-filled (large, like the site's)
    data_ = own_.get();
    return;
  }
  if (site.capacity_ < n) {
    site.data_.reset();  // the old buffer goes back before the larger one is mapped
    site.data_.reset(new float[n]);
    site.capacity_ = n;
  }
  site.taken_ = true;
  site_ = &site;
  data_ = site.data_.get();
}

Scratch::~Scratch() {
  if (site_ == nullptr) return;
  site_->taken_ = false;
  if (site_->capacity_ * sizeof(float) > kKeepBytes) {
    site_->data_.reset();
    site_->capacity_ = 0;
  }
}

}  // namespace dsv3::engine
