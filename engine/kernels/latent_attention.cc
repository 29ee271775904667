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

// 4 queries by 4 rows: 16 sums in registers, 8 loads for 16 multiply-adds, and one transposing
// reduction per query for its 4 rows (Sum4). Every score is the same sequence of operations
// wherever its query and row sit in a tile, so a query's scores do not depend on the others
// computed with it (a prompt's rows attend to the bit as its tokens decoded alone would).
template <bool kPrefetch>
DSV3_AVX512 void ScoresTile(const float* const* q, const float* const* r, const float* const* ahead,
                            int64_t width, __m128* sums) {
  __m512 acc[4][4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) acc[i][k] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < width; c += 16) {
    if constexpr (kPrefetch) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k)
        _mm_prefetch(reinterpret_cast<const char*>(ahead[k] + c), _MM_HINT_T0);
    }
    const __mmask16 m = TailMask(width - c);
    __m512 rv[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) rv[k] = _mm512_maskz_loadu_ps(m, r[k] + c);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512 qv = _mm512_maskz_loadu_ps(m, q[i] + c);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) acc[i][k] = _mm512_fmadd_ps(qv, rv[k], acc[i][k]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) sums[i] = Sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
}

// Rows 4 at a time, each block against every query in tiles of 4 (a short last tile repeats
// its last query or row and stores only its own). The first tile of a block prefetches the
// rows kPrefetchRows ahead: they come from DRAM (the step's weights evicted them) and their
// pages are scattered. The block's rows stay in L1 for the later tiles.
DSV3_AVX512 void ScoresAvx512(const float* q, int64_t q_stride, int64_t nq,
                              const float* const* rows, int64_t n, int64_t width, float scale,
                              float* scores, int64_t score_stride) {
  const __m128 s = _mm_set1_ps(scale);
  for (int64_t j0 = 0; j0 < n; j0 += 4) {
    const int64_t nr = std::min<int64_t>(4, n - j0);
    const float* r[4];
    const float* ahead[4];
    for (int64_t k = 0; k < 4; ++k) {
      r[k] = rows[j0 + std::min(k, nr - 1)];
      ahead[k] = rows[std::min(j0 + kPrefetchRows + k, n - 1)];
    }
    const __mmask8 store = static_cast<__mmask8>((1u << nr) - 1u);
    for (int64_t g0 = 0; g0 < nq; g0 += 4) {
      const int64_t nqq = std::min<int64_t>(4, nq - g0);
      const float* qs[4];
      for (int64_t i = 0; i < 4; ++i) qs[i] = q + (g0 + std::min(i, nqq - 1)) * q_stride;
      __m128 sums[4];
      if (g0 == 0) {
        ScoresTile<true>(qs, r, ahead, width, sums);
      } else {
        ScoresTile<false>(qs, r, ahead, width, sums);
      }
      for (int64_t i = 0; i < nqq; ++i) {
        _mm_mask_storeu_ps(scores + (g0 + i) * score_stride + j0, store, _mm_mul_ps(sums[i], s));
      }
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
  if (CpuHasAvx512())
    return ScoresAvx512(q, q_stride, heads, rows, n, width, scale, scores, score_stride);
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
