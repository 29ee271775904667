#ifndef DSV3_ENGINE_KERNELS_AVX512_H_
#define DSV3_ENGINE_KERNELS_AVX512_H_

// What the AVX-512 kernels of this folder share: the intrinsics, the target attribute their
// functions carry (the rest of the binary stays baseline x86-64, so one build runs on any CI
// machine), and whether this CPU runs them. Include it from .cc files only: it turns off two
// GCC warnings for the including file.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's intrinsic headers trip -W(maybe-)uninitialized on their own _mm512_undefined_*
// placeholders (a known false positive, GCC PR 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#define DSV3_HAVE_AVX512_KERNEL 1
#define DSV3_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define DSV3_AVX512_INLINE DSV3_AVX512 __attribute__((always_inline)) inline

namespace dsv3::engine {

// AVX-512 F, BW, VL and DQ: what the kernels compiled with DSV3_AVX512 use.
inline bool CpuHasAvx512() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
}

// And AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16): the bf16 kernels and bf16 tiles.
inline bool CpuHasAvx512Bf16() {
  static const bool has = CpuHasAvx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

// And AVX512_VBMI (vpermt2b, byte tables): the FP8 kernel for 1-16 rows (matmul_fp8.cc).
inline bool CpuHasAvx512Vbmi() {
  static const bool has = CpuHasAvx512Bf16() && __builtin_cpu_supports("avx512vbmi");
  return has;
}

// The first min(left, 16) lanes: the mask of a loop's last, partial vector.
DSV3_AVX512_INLINE __mmask16 TailMask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF)
                    : static_cast<__mmask16>((1u << static_cast<unsigned>(left)) - 1u);
}

// Lanes 0-3: the sums of the 16 lanes of a, b, c and d. One transposing reduction for the
// four (13 instructions) instead of four horizontal ones (8 each, a dependent chain).
DSV3_AVX512_INLINE __m128 Sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // In each 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3], and the same of c and d.
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  // In each 128-bit lane: that lane's sums of a, b, c, d.
  const __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
  const __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// exp(v) for v in [-87.3, 88.3] (the callers clamp or mask the rest), within about 1 ulp of
// expf: v = k ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so k ln2 is exact), a degree-6
// polynomial in r (Cephes' expf coefficients), scaled by 2^k.
DSV3_AVX512_INLINE __m512 ExpAvx512(__m512 v) {
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), v);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, k);
}

}  // namespace dsv3::engine

#endif

#endif  // DSV3_ENGINE_KERNELS_AVX512_H_
