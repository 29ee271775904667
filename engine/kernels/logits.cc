#include "engine/kernels/logits.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/kernels/avx512.h"

namespace dsv3::engine {
namespace {

// Below this exponent a float exponential is subnormal or zero: taken as zero.
constexpr float kMinExponent = -87.0f;

#if DSV3_HAVE_AVX512_KERNEL

DSV3_AVX512 float MaxAvx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    // Lanes past the end (and NaN entries: max_ps returns its second operand) keep m.
    m = _mm512_mask_max_ps(m, k, _mm512_maskz_loadu_ps(k, x + i), m);
  }
  return _mm512_reduce_max_ps(m);
}

DSV3_AVX512 int64_t ArgmaxAvx512(const float* x, int64_t n) {
  const float max = MaxAvx512(x, n);
  const __m512 m = _mm512_set1_ps(max);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    const __mmask16 hit =
        _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, x + i), m, _CMP_EQ_OQ);
    if (hit != 0) return i + __builtin_ctz(hit);
  }
  return 0;  // all NaN
}

// a0 + a1 += exp((x - shift) * scale) of the lanes in k, in double. Lanes past the end, below
// the range, or NaN add nothing.
DSV3_AVX512_INLINE void AddExp(__m512 x, __mmask16 k, __m512 shift, __m512 scale, __m512d& a0,
                               __m512d& a1) {
  const __m512 lo = _mm512_set1_ps(kMinExponent);
  const __m512 v = _mm512_mul_ps(_mm512_sub_ps(x, shift), scale);
  const __mmask16 live = _mm512_mask_cmp_ps_mask(k, v, lo, _CMP_GE_OQ);
  const __m512 e = _mm512_maskz_mov_ps(live, ExpAvx512(_mm512_max_ps(v, lo)));
  a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
  a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
}

DSV3_AVX512 double SumExpAvx512(const float* x, int64_t n, float shift, float scale) {
  const __m512 s = _mm512_set1_ps(shift), c = _mm512_set1_ps(scale);
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    AddExp(_mm512_maskz_loadu_ps(k, x + i), k, s, c, a0, a1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

DSV3_AVX512 int64_t BandsAvx512(const float* x, int64_t n, float max, float scale, uint8_t last,
                                uint8_t* band) {
  const __m512 m = _mm512_set1_ps(max), c = _mm512_set1_ps(scale);
  const __m512 top = _mm512_set1_ps(static_cast<float>(last));
  const __m512 finite_min = _mm512_set1_ps(-std::numeric_limits<float>::max());
  const __m512i none = _mm512_set1_epi32(kNoBand);
  int64_t finite = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(k, v, finite_min, _CMP_GE_OQ);
    const __m512 d = _mm512_min_ps(_mm512_mul_ps(_mm512_sub_ps(m, v), c), top);
    const __m512i b = _mm512_mask_cvttps_epi32(none, ok, d);
    _mm512_mask_cvtepi32_storeu_epi8(band + i, k, b);
    finite += __builtin_popcount(ok);
  }
  return finite;
}

DSV3_AVX512 void IndicesInBandAvx512(const uint8_t* band, int64_t n, uint8_t b,
                                     std::vector<int32_t>* ids) {
  const __m512i want = _mm512_set1_epi8(static_cast<char>(b));
  for (int64_t i = 0; i < n; i += 64) {
    const __mmask64 k = n - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (n - i)) - 1;
    __mmask64 hit = _mm512_mask_cmpeq_epi8_mask(k, _mm512_maskz_loadu_epi8(k, band + i), want);
    while (hit != 0) {
      ids->push_back(static_cast<int32_t>(i + __builtin_ctzll(hit)));
      hit &= hit - 1;
    }
  }
}

DSV3_AVX512 double SumExpAtAvx512(const float* x, const int32_t* ids, int64_t n, float shift,
                                  float scale, float* min_x, float* max_x) {
  const __m512 s = _mm512_set1_ps(shift), c = _mm512_set1_ps(scale);
  __m512 mn = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    const __m512i at = _mm512_maskz_loadu_epi32(k, ids + i);
    const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, at, x, 4);
    mn = _mm512_mask_min_ps(mn, k, xv, mn);
    mx = _mm512_mask_max_ps(mx, k, xv, mx);
    AddExp(xv, k, s, c, a0, a1);
  }
  *min_x = _mm512_reduce_min_ps(mn);
  *max_x = _mm512_reduce_max_ps(mx);
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

DSV3_AVX512 void BandsAtAvx512(const float* x, const int32_t* ids, int64_t n, float max,
                               float scale, uint8_t last, uint8_t* band) {
  const __m512 m = _mm512_set1_ps(max), c = _mm512_set1_ps(scale);
  const __m512 top = _mm512_set1_ps(static_cast<float>(last));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    const __m512i at = _mm512_maskz_loadu_epi32(k, ids + i);
    const __m512 v = _mm512_mask_i32gather_ps(m, k, at, x, 4);
    const __m512 d = _mm512_min_ps(_mm512_mul_ps(_mm512_sub_ps(m, v), c), top);
    _mm512_mask_cvtepi32_storeu_epi8(band + i, k, _mm512_cvttps_epi32(d));
  }
}

#endif  // DSV3_HAVE_AVX512_KERNEL

}  // namespace

float MaxOf(const float* x, int64_t n) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return MaxAvx512(x, n);
#endif
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);  // NaN: comparisons false, m kept
  return m;
}

int64_t ArgmaxFirst(const float* x, int64_t n) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return ArgmaxAvx512(x, n);
#endif
  const float m = MaxOf(x, n);
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;
}

double SumExp(const float* x, int64_t n, float shift, float scale) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return SumExpAvx512(x, n, shift, scale);
#endif
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = (x[i] - shift) * scale;
    if (v >= kMinExponent) sum += std::exp(static_cast<double>(v));
  }
  return sum;
}

int64_t BandsOf(const float* x, int64_t n, float max, float scale, uint8_t last, uint8_t* band) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return BandsAvx512(x, n, max, scale, last, band);
#endif
  int64_t finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    band[i] = kNoBand;
    if (x[i] >= -std::numeric_limits<float>::max()) {
      band[i] = static_cast<uint8_t>(std::min((max - x[i]) * scale, static_cast<float>(last)));
      ++finite;
    }
  }
  return finite;
}

void IndicesInBand(const uint8_t* band, int64_t n, uint8_t b, std::vector<int32_t>* ids) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return IndicesInBandAvx512(band, n, b, ids);
#endif
  for (int64_t i = 0; i < n; ++i) {
    if (band[i] == b) ids->push_back(static_cast<int32_t>(i));
  }
}

double SumExpAt(const float* x, const int32_t* ids, int64_t n, float shift, float scale,
                float* min_x, float* max_x) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return SumExpAtAvx512(x, ids, n, shift, scale, min_x, max_x);
#endif
  double sum = 0.0;
  float mn = std::numeric_limits<float>::infinity();
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[ids[i]];
    mn = std::min(mn, xi);
    mx = std::max(mx, xi);
    const float v = (xi - shift) * scale;
    if (v >= kMinExponent) sum += std::exp(static_cast<double>(v));
  }
  *min_x = mn;
  *max_x = mx;
  return sum;
}

void BandsAt(const float* x, const int32_t* ids, int64_t n, float max, float scale, uint8_t last,
             uint8_t* band) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) return BandsAtAvx512(x, ids, n, max, scale, last, band);
#endif
  for (int64_t i = 0; i < n; ++i) {
    band[i] = static_cast<uint8_t>(std::min((max - x[ids[i]]) * scale, static_cast<float>(last)));
  }
}

}  // namespace dsv3::engine
