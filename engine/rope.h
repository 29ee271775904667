#ifndef DSV3_ENGINE_ROPE_H_
#define DSV3_ENGINE_ROPE_H_

// Rotary position embedding as DeepSeek-V3 applies it: rotations of the interleaved pairs
// (2i, 2i+1) of the stored q_pe / k_pe (HF de-interleaves and rotates halves: the same
// function; rotating halves of the stored layout would be a different one). With YaRN
// (rope_scaling type yarn) the frequencies get the ramp correction between beta_fast and
// beta_slow, and cos/sin are scaled by mscale(factor, mscale) / mscale(factor, mscale_all_dim)
// as in HF (1 when the two are equal, as in every DeepSeek release).

#include <cstdint>
#include <vector>

#include "engine/model_config.h"

namespace dsv3::engine {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);

  int64_t dim() const { return dim_; }
  // cos/sin of the dim/2 pair angles at `position`.
  void CosSin(int64_t position, float* cos, float* sin) const;
  // Rotates `count` vectors of `dim` floats, `stride` floats apart, all at one position.
  static void Apply(const float* cos, const float* sin, int64_t dim, float* x, int64_t count,
                    int64_t stride);

  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  int64_t dim_;
  double cos_sin_scale_ = 1.0;
  std::vector<double> inv_freq_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_ROPE_H_
