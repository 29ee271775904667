#include "engine/kernels/latent_attention.h"

#include <algorithm>
#include <cstring>

#include "engine/kernels/avx512.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {
namespace {

#if DSV3_HAVE_AVX512_KERNEL

// Rows ahead of the scores loop that it prefetches (8 rows: 10 KiB at DeepSeek-V3's widths).
constexpr int64_t kPrefetchRows = 8;

// Two rows at a time: each query vector loaded once serves both, and 2 x H accumulators
// hide the FMA latency.
template <int H>
DSV3_AVX512 void ScoresAvx512(const float* q, int64_t q_stride, const float* const* rows, int64_t n,
                              int64_t width, float scale, float* scores, int64_t score_stride) {
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    const float* r0 = rows[j];
    const float* r1 = rows[j + 1];
    // The rows come from DRAM (the step's weights evicted them) and their pages are scattered:
    // ask for the rows kPrefetchRows ahead, a line per chunk, or the loads wait on memory.
    const float* f0 = rows[std::min(j + kPrefetchRows, n - 1)];
    const float* f1 = rows[std::min(j + kPrefetchRows + 1, n - 1)];
    __m512 a0[H], a1[H];
#pragma GCC unroll 8
    for (int g = 0; g < H; ++g) a0[g] = a1[g] = _mm512_setzero_ps();
    for (int64_t c = 0; c < width; c += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(f0 + c), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(f1 + c), _MM_HINT_T0);
      const __mmask16 m = TailMask(width - c);
      const __m512 v0 = _mm512_maskz_loadu_ps(m, r0 + c);
      const __m512 v1 = _mm512_maskz_loadu_ps(m, r1 + c);
#pragma GCC unroll 8
      for (int g = 0; g < H; ++g) {
        const __m512 qv = _mm512_maskz_loadu_ps(m, q + g * q_stride + c);
        a0[g] = _mm512_fmadd_ps(qv, v0, a0[g]);
        a1[g] = _mm512_fmadd_ps(qv, v1, a1[g]);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < H; ++g) {
      scores[g * score_stride + j] = scale * _mm512_reduce_add_ps(a0[g]);
      scores[g * score_stride + j + 1] = scale * _mm512_reduce_add_ps(a1[g]);
    }
  }
  if (j < n) {
    for (int g = 0; g < H; ++g) {
      scores[g * score_stride + j] = scale * Dot(q + g * q_stride, rows[j], width);
    }
  }
}

// 32 columns at a time over every row: the H x 2 sums stay in registers for the whole pass,
// and each cache line of a row is read by exactly one column chunk.
template <int H>
DSV3_AVX512 void WeightedSumAvx512(const float* p, int64_t p_stride, const float* const* rows,
                                   int64_t n, int64_t cols, float* out, int64_t out_stride) {
  for (int64_t c = 0; c < cols; c += 32) {
    const __mmask16 m0 = TailMask(cols - c);
    const __mmask16 m1 = cols - c > 16 ? TailMask(cols - c - 16) : static_cast<__mmask16>(0);
    __m512 s0[H], s1[H];
#pragma GCC unroll 8
    for (int g = 0; g < H; ++g) s0[g] = s1[g] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const float* ahead = rows[std::min(j + kPrefetchRows, n - 1)] + c;
      _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + 16), _MM_HINT_T0);
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, rows[j] + c);
      const __m512 v1 = _mm512_maskz_loadu_ps(m1, rows[j] + c + 16);
#pragma GCC unroll 8
      for (int g = 0; g < H; ++g) {
        const __m512 pj = _mm512_set1_ps(p[g * p_stride + j]);
        s0[g] = _mm512_fmadd_ps(pj, v0, s0[g]);
        s1[g] = _mm512_fmadd_ps(pj, v1, s1[g]);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < H; ++g) {
      _mm512_mask_storeu_ps(out + g * out_stride + c, m0, s0[g]);
      _mm512_mask_storeu_ps(out + g * out_stride + c + 16, m1, s1[g]);
    }
  }
}

#define DSV3_DISPATCH_HEADS(heads, fn, ...) \
  switch (heads) {                          \
    case 1:                                 \
      return fn<1>(__VA_ARGS__);            \
    case 2:                                 \
      return fn<2>(__VA_ARGS__);            \
    case 3:                                 \
      return fn<3>(__VA_ARGS__);            \
    case 4:                                 \
      return fn<4>(__VA_ARGS__);            \
    case 5:                                 \
      return fn<5>(__VA_ARGS__);            \
    case 6:                                 \
      return fn<6>(__VA_ARGS__);            \
    case 7:                                 \
      return fn<7>(__VA_ARGS__);            \
    case 8:                                 \
      return fn<8>(__VA_ARGS__);            \
    default:                                \
      break;                                \
  }

#endif  // DSV3_HAVE_AVX512_KERNEL

}  // namespace

void LatentScores(const float* q, int64_t q_stride, int64_t heads, const float* const* rows,
                  int64_t n, int64_t width, float scale, float* scores, int64_t score_stride) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) {
    DSV3_DISPATCH_HEADS(heads, ScoresAvx512, q, q_stride, rows, n, width, scale, scores,
                        score_stride);
  }
#endif
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t g = 0; g < heads; ++g) {
      scores[g * score_stride + j] = scale * Dot(q + g * q_stride, rows[j], width);
    }
  }
}

void LatentWeightedSum(const float* p, int64_t p_stride, int64_t heads, const float* const* rows,
                       int64_t n, int64_t cols, float* out, int64_t out_stride) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) {
    DSV3_DISPATCH_HEADS(heads, WeightedSumAvx512, p, p_stride, rows, n, cols, out, out_stride);
  }
#endif
  for (int64_t g = 0; g < heads; ++g) std::memset(out + g * out_stride, 0, sizeof(float) * cols);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t g = 0; g < heads; ++g)
      Axpy(p[g * p_stride + j], rows[j], out + g * out_stride, cols);
  }
}

}  // namespace dsv3::engine
