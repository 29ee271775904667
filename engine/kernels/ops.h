#ifndef DSV3_ENGINE_KERNELS_OPS_H_
#define DSV3_ENGINE_KERNELS_OPS_H_

// Small f32 vector kernels. The hot ones are compiled for AVX-512, AVX2 and baseline x86-64
// and picked at load time (GCC target_clones / ifunc), so one binary runs on any CI machine.

#include <cstdint>

namespace dsv3::engine {

float Dot(const float* a, const float* b, int64_t n);
// y += a * x (x and y must not overlap)
void Axpy(float a, const float* x, float* y, int64_t n);
// y += x (x and y must not overlap)
void Add(const float* x, float* y, int64_t n);
// out = x / sqrt(mean(x^2) + eps) * weight (out may alias x).
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);
// Row-wise RmsNorm over `rows` rows with strides.
void RmsNormRows(const float* x, int64_t ldx, const float* weight, int64_t n, int64_t rows,
                 float eps, float* out, int64_t ldo);
// out[i] = silu(gate[i]) * up[i]
void SiluMul(const float* gate, const float* up, int64_t n, float* out);
// In-place softmax; returns nothing. Max-subtracted, f32 sum.
void SoftmaxInPlace(float* x, int64_t n);
// L2 norm (f64 accumulation).
double L2Norm(const float* x, int64_t n);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_OPS_H_
