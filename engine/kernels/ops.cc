#include "engine/kernels/ops.h"

#include <algorithm>
#include <cmath>

namespace dsv3::engine {

// Not under ThreadSanitizer: an ifunc resolver runs while the dynamic loader relocates the
// binary, before TSan's runtime is up, and TSan's instrumentation of it crashes there.
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define DSV3_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DSV3_MULTIVERSION
#endif

DSV3_MULTIVERSION float Dot(const float* a, const float* b, int64_t n) {
  // 16 independent partial sums: vectorisable without -ffast-math.
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  for (int j = 0; j < 8; ++j) acc[j] += acc[j + 8];
  for (int j = 0; j < 4; ++j) acc[j] += acc[j + 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail;
}

// __restrict: without it GCC keeps these loops scalar (x and y might overlap), which made
// Axpy a quarter of a batch-1 decode step (the absorbed attention's W_UK fold and P.V).
DSV3_MULTIVERSION void Axpy(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

DSV3_MULTIVERSION void Add(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}

void RmsNormRows(const float* x, int64_t ldx, const float* weight, int64_t n, int64_t rows,
                 float eps, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) RmsNorm(x + r * ldx, weight, n, eps, out + r * ldo);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void SoftmaxInPlace(float* x, int64_t n) {
  if (n <= 0) return;
  const float m = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

double L2Norm(const float* x, int64_t n) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  return std::sqrt(ss);
}

}  // namespace dsv3::engine
