#include "engine/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv3::engine {
namespace {

// Dimension index at which a frequency makes `num_rotations` turns over the original context.
double CorrectionDim(double num_rotations, double dim, double base, double max_positions) {
  return dim * std::log(max_positions / (num_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(base));
}

double YarnMscale(double factor, double mscale) {
  if (factor <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(factor) + 1.0;
}

}  // namespace

Rope::Rope(const ModelConfig& config) : dim_(config.qk_rope_head_dim) {
  const int64_t half = dim_ / 2;
  inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq_[i] = 1.0 / std::pow(config.rope_theta, static_cast<double>(2 * i) / dim_);
  }
  if (!config.rope_yarn.has_value()) return;
  const YarnConfig& y = *config.rope_yarn;
  const double orig = static_cast<double>(y.original_max_position_embeddings);
  double low = std::floor(CorrectionDim(y.beta_fast, dim_, config.rope_theta, orig));
  double high = std::ceil(CorrectionDim(y.beta_slow, dim_, config.rope_theta, orig));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim_ - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;  // 1: keep the original frequency
    inv_freq_[i] = inv_freq_[i] / y.factor * (1.0 - extrapolation) + inv_freq_[i] * extrapolation;
  }
  cos_sin_scale_ = YarnMscale(y.factor, y.mscale) / YarnMscale(y.factor, y.mscale_all_dim);
}

void Rope::CosSin(int64_t position, float* cos, float* sin) const {
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const double angle = static_cast<double>(position) * inv_freq_[i];
    cos[i] = static_cast<float>(std::cos(angle) * cos_sin_scale_);
    sin[i] = static_cast<float>(std::sin(angle) * cos_sin_scale_);
  }
}

void Rope::Apply(const float* cos, const float* sin, int64_t dim, float* x, int64_t count,
                 int64_t stride) {
  for (int64_t v = 0; v < count; ++v) {
    float* p = x + v * stride;
    for (int64_t i = 0; i < dim / 2; ++i) {
      const float a = p[2 * i];
      const float b = p[2 * i + 1];
      p[2 * i] = a * cos[i] - b * sin[i];
      p[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  }
}

}  // namespace dsv3::engine
