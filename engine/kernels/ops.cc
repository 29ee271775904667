#include "engine/kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "engine/kernels/avx512.h"

namespace dsv3::engine {

// Not under ThreadSanitizer: an ifunc resolver runs while the dynamic loader relocates the
// binary, before TSan's runtime is up, and TSan's instrumentation of it crashes there.
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define DSV3_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DSV3_MULTIVERSION
#endif

#if DSV3_HAVE_AVX512_KERNEL
namespace {

// e^x, x clamped to ExpAvx512's range: below -87.3 (e^x under FLT_MIN) the result is
// FLT_MIN-sized, not 0, which adds nothing to a softmax.
DSV3_AVX512_INLINE __m512 Exp16(__m512 x) {
  return ExpAvx512(_mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f)));
}

// The attention's softmax, a cache row per element: scalar expf was 7% of a 512-token prefill.
// The sum stays in f64, in 16 lanes.
DSV3_AVX512 void SoftmaxAvx512(float* x, int64_t n) {
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < n; i += 16) {
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(mv, TailMask(n - i), x + i));
  }
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = TailMask(n - i);
    const __m512 e =
        _mm512_maskz_mov_ps(mask, Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), m)));
    _mm512_mask_storeu_ps(x + i, mask, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  const __m512 inv =
      _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = TailMask(n - i);
    _mm512_mask_storeu_ps(x + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inv));
  }
}

// silu(g) * u = g / (1 + e^-g) * u, 16 at a time (scalar expf was 2-3% of a prefill).
DSV3_AVX512 void SiluMulAvx512(const float* gate, const float* up, int64_t n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = TailMask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

}  // namespace
#endif  // DSV3_HAVE_AVX512_KERNEL

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
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return SiluMulAvx512(gate, up, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void SoftmaxInPlace(float* x, int64_t n) {
  if (n <= 0) return;
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return SoftmaxAvx512(x, n);
#endif
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
