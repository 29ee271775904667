#include "engine/kernels/matmul_bf16.h"

#include <algorithm>
#include <cstring>

#include "engine/dtype.h"
#include "engine/kernels/avx512.h"
#include "engine/kernels/matmul_direct.h"
#include "engine/thread_pool.h"

#if DSV3_HAVE_AVX512_KERNEL
#define DSV3_HAVE_BF16_KERNEL 1
#endif

namespace dsv3::engine {
namespace {

constexpr int64_t kChunkCols = 32;  // bf16 columns one vdpbf16ps consumes
// Activation rows that meet each weight panel (the callers' 64 at most: one chunk).
constexpr int64_t kChunkRows = 64;
// Columns of an activation block (both parts of 6 rows: 24 KB, in L1).
constexpr int64_t kBlockCols = 1024;
// Weight rows of a panel (32 rows of 4,096 columns: 256 KB, in L2).
constexpr int64_t kPanelRows = 32;
// Weight rows MatMulRowsBf16Tiles dequantises at a time (128 x 2,816 bf16: 720 KB, in L2).
constexpr int64_t kTileRows = 128;
// Activations are rounded by the pool's threads in chunks of at least this many elements.
constexpr int64_t kParallelSplitElements = 1 << 16;

#if DSV3_HAVE_BF16_KERNEL

#define DSV3_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c")))
#define DSV3_BF16_INLINE DSV3_BF16 __attribute__((always_inline)) inline

DSV3_BF16_INLINE __m512bh AsBh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// Columns [c0, c1) of R weight rows (w[0..R)) against B activation rows at xh/xl: writes
// y[b * ldy + r], or adds to it (`accumulate`: a later block of columns). `ahead` (elements,
// 0: none): the weights come from memory, so fetch the weights that far past each one read,
// and into L2 those `l2_ahead` past (matmul_direct.cc's four-row kernel says why).
template <int R, int B, bool kLo>
DSV3_BF16 void Block(const uint16_t* const* w, const uint16_t* xh, const uint16_t* xl,
                     int64_t stride, int64_t c0, int64_t c1, int64_t k, bool accumulate,
                     int64_t ahead, int64_t l2_ahead, float* y, int64_t ldy) {
  __m512 acc[R][B];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int b = 0; b < B; ++b) acc[r][b] = _mm512_setzero_ps();
  }
  const int64_t full = std::min(c1, k / kChunkCols * kChunkCols);
  for (int64_t c = c0; c < c1; c += kChunkCols) {
    __m512i wv[R];
    if (c < full) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        if (ahead > 0) {
          _mm_prefetch(reinterpret_cast<const char*>(w[r] + ahead + c), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(w[r] + l2_ahead + c), _MM_HINT_T1);
        }
        wv[r] = _mm512_loadu_si512(w[r] + c);
      }
    } else {  // the row's last, partial chunk (the activations are zero-padded)
      const auto mask = static_cast<__mmask32>((uint64_t{1} << (k - c)) - 1);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi16(mask, w[r] + c);
    }
#pragma GCC unroll 6
    for (int b = 0; b < B; ++b) {
      const __m512i h = _mm512_loadu_si512(xh + b * stride + c);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], AsBh(wv[r]), AsBh(h));
      if constexpr (kLo) {
        const __m512i l = _mm512_loadu_si512(xl + b * stride + c);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], AsBh(wv[r]), AsBh(l));
      }
    }
  }
  if constexpr (R == 4) {  // the R outputs of a row are adjacent in y
#pragma GCC unroll 6
    for (int b = 0; b < B; ++b) {
      __m128 v = Sum4(acc[0][b], acc[1][b], acc[2][b], acc[3][b]);
      if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(y + b * ldy));
      _mm_storeu_ps(y + b * ldy, v);
    }
  } else {  // summed as Sum4 sums each of its four: a row's bits do not depend on its R
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int b = 0; b < B; ++b) {
      for (int r = 0; r < R; ++r) {
        const float v = _mm_cvtss_f32(Sum4(acc[r][b], zero, zero, zero));
        y[b * ldy + r] = accumulate ? y[b * ldy + r] + v : v;
      }
    }
  }
}

// Weight rows [j0, j1) (a panel) against activation rows [i0, i1), columns [c0, c1).
template <bool kLo>
DSV3_BF16 void Panel(const Bf16Activations& xs, const uint16_t* base, int64_t k, int64_t j0,
                     int64_t j1, int64_t i0, int64_t i1, int64_t c0, int64_t c1, float* y,
                     int64_t ldy) {
  const int64_t s = xs.stride;
  const bool accumulate = c0 > 0;
  for (int64_t b = i0; b < i1; b += 6) {
    const uint16_t* xh = xs.hi.data() + b * s;
    // Rounded activations have no low parts (lo empty: no offset from its null data()).
    const uint16_t* xl = kLo ? xs.lo.data() + b * s : nullptr;
    float* yb = y + b * ldy;
    const int64_t rows = std::min<int64_t>(6, i1 - b);
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
      const uint16_t* rw[4];
      for (int r = 0; r < 4; ++r) rw[r] = base + (j + r) * k;
      // The first activation block streams the panel in: the same columns of the next four
      // rows (the next call's) into L1, of the four after those into L2.
      const int64_t ahead = b == i0 ? 4 * k : 0;
      switch (rows) {
        case 1:
          Block<4, 1, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
        case 2:
          Block<4, 2, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
        case 3:
          Block<4, 3, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
        case 4:
          Block<4, 4, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
        case 5:
          Block<4, 5, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
        default:
          Block<4, 6, kLo>(rw, xh, xl, s, c0, c1, k, accumulate, ahead, 3 * ahead, yb + j, ldy);
          break;
      }
    }
    for (; j < j1; ++j) {  // the last 1-3 rows of the thread's share
      const uint16_t* rw[1] = {base + j * k};
      for (int64_t i = 0; i < rows; ++i) {
        Block<1, 1, kLo>(rw, xh + i * s, kLo ? xl + i * s : nullptr, s, c0, c1, k, accumulate, 0, 0,
                         yb + i * ldy + j, ldy);
      }
    }
  }
}

// One activation row (bf16 activations at batch 1): nothing to reuse, so each four weight
// rows stream whole, block of columns after block, the next four rows prefetched meanwhile
// (matmul_direct.cc's four-row kernel says why). Each output is summed by the same Block
// calls in the same order as Rows below, so a row's result is the same at batch 1 as in any
// batch (linear.cc, Bf16For).
template <bool kLo>
DSV3_BF16 void OneRow(const Bf16Activations& xs, const uint16_t* base, int64_t k, int64_t row_count,
                      float* y) {
  const int64_t s = xs.stride;
  const uint16_t* xh = xs.hi.data();
  const uint16_t* xl = xs.lo.data();
  // At least 8 KB ahead (short rows), and at least the next four rows' same columns.
  const int64_t ahead = std::max<int64_t>(4096, 4 * k);
  int64_t j = 0;
  for (; j + 4 <= row_count; j += 4) {
    const uint16_t* rw[4];
    for (int r = 0; r < 4; ++r) rw[r] = base + (j + r) * k;
    for (int64_t c0 = 0; c0 < s; c0 += kBlockCols) {
      Block<4, 1, kLo>(rw, xh, xl, s, c0, std::min(s, c0 + kBlockCols), k, c0 > 0, ahead, 2 * ahead,
                       y + j, 0);
    }
  }
  for (; j < row_count; ++j) {
    const uint16_t* rw[1] = {base + j * k};
    for (int64_t c0 = 0; c0 < s; c0 += kBlockCols) {
      Block<1, 1, kLo>(rw, xh, xl, s, c0, std::min(s, c0 + kBlockCols), k, c0 > 0, 0, 0, y + j, 0);
    }
  }
}

template <bool kLo>
DSV3_BF16 void Rows(const Bf16Activations& xs, const Linear& w, int64_t row_begin,
                    int64_t row_count, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint16_t*>(w.data) + row_begin * w.in_features;
  const int64_t k = w.in_features;
  if (xs.m == 1) return OneRow<kLo>(xs, base, k, row_count, y);
  // Blocked as a GEMM: a panel of kPanelRows weight rows (all columns: 256 KB at 4,096) stays
  // in L2 while every activation row meets it, a block of 6 rows by kBlockCols columns at a
  // time (24 KB with both parts, in L1). The first activation block streams the panel in from
  // memory, a block of columns ahead.
  for (int64_t i0 = 0; i0 < xs.m; i0 += kChunkRows) {
    const int64_t i1 = std::min(xs.m, i0 + kChunkRows);
    for (int64_t j0 = 0; j0 < row_count; j0 += kPanelRows) {
      for (int64_t c0 = 0; c0 < xs.stride; c0 += kBlockCols) {
        const int64_t c1 = std::min(xs.stride, c0 + kBlockCols);
        Panel<kLo>(xs, base, k, j0, std::min(row_count, j0 + kPanelRows), i0, i1, c0, c1, y, ldy);
      }
    }
  }
}

// lo == nullptr: round only.
DSV3_BF16 void SplitRow(const float* x, int64_t k, int64_t stride, uint16_t* hi, uint16_t* lo) {
  for (int64_t c = 0; c < stride; c += 16) {
    const int64_t n = std::clamp<int64_t>(k - c, 0, 16);
    const auto mask = static_cast<__mmask16>((1u << n) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(mask, x + c);
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + c), h);
    if (lo == nullptr) continue;
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    const __m256i l = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, hf)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + c), l);
  }
}

// Rows of W [row_begin, row_begin + rows) as bf16 into tile [rows, k]: dequantised to f32
// (the format's own code), then rounded to nearest even.
DSV3_BF16 void DequantTile(const Linear& w, int64_t row_begin, int64_t rows, uint16_t* tile) {
  thread_local std::vector<float> row;
  const int64_t k = w.in_features;
  row.resize(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    if (DequantRowBf16(w, row_begin + r, tile + r * k)) continue;  // the same, in one pass
    DequantRowFast(w, row_begin + r, row.data());
    SplitRow(row.data(), k, k / 16 * 16, tile + r * k, nullptr);
    for (int64_t c = k / 16 * 16; c < k; ++c) tile[r * k + c] = FloatToBF16(row[c]);
  }
}

#endif  // DSV3_HAVE_BF16_KERNEL

}  // namespace

bool Bf16TilesApply(const Linear& w) {
#if DSV3_HAVE_BF16_KERNEL
  const bool quantized = (w.dtype == DType::kQ4 || w.dtype == DType::kQ8) && w.int8_activations;
  const bool fp8 = w.dtype == DType::kF8E4M3 && w.bf16_activations;
  return (quantized || fp8) && CpuHasAvx512Bf16();
#else
  (void)w;
  return false;
#endif
}

bool Bf16KernelApplies(const Linear& w) {
#if DSV3_HAVE_BF16_KERNEL
  return w.dtype == DType::kBF16 && CpuHasAvx512Bf16();
#else
  (void)w;
  return false;
#endif
}

void SplitActivations(const float* x, int64_t m, int64_t ldx, int64_t k, bool split,
                      Bf16Activations* out) {
  out->m = m;
  out->k = k;
  out->split = split;
  out->stride = (k + kChunkCols - 1) / kChunkCols * kChunkCols;
  const auto size = static_cast<size_t>(m * out->stride);
  if (out->hi.size() < size) out->hi.resize(size);
  if (split && out->lo.size() < size) out->lo.resize(size);
#if DSV3_HAVE_BF16_KERNEL
  const auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      SplitRow(x + i * ldx, k, out->stride, out->hi.data() + i * out->stride,
               split ? out->lo.data() + i * out->stride : nullptr);
    }
  };
  // A prompt's activations ([512, 2816] into a dense down projection) took 3% of a prefill on
  // one thread while the others waited for the product. Chunks of at least
  // kParallelSplitElements: fewer rows (decode) run inline, as do calls from inside a job.
  ThreadPool::Default().ParallelFor(m, rows, std::max<int64_t>(1, kParallelSplitElements / k));
#else
  (void)x, (void)ldx;
#endif
}

void MatMulRowsBf16(const Bf16Activations& xs, const Linear& w, int64_t row_begin,
                    int64_t row_count, float* y, int64_t ldy) {
  if (xs.m <= 0 || row_count <= 0) return;
#if DSV3_HAVE_BF16_KERNEL
  if (xs.split) return Rows<true>(xs, w, row_begin, row_count, y, ldy);
  Rows<false>(xs, w, row_begin, row_count, y, ldy);
#else
  (void)w, (void)y, (void)ldy;
#endif
}

void MatMulRowsBf16Tiles(const Bf16Activations& xs, const Linear& w, int64_t row_begin,
                         int64_t row_count, float* y, int64_t ldy) {
  if (xs.m <= 0 || row_count <= 0) return;
#if DSV3_HAVE_BF16_KERNEL
  thread_local std::vector<uint16_t> tile;
  tile.resize(static_cast<size_t>(kTileRows * w.in_features));
  Linear t;
  t.dtype = DType::kBF16;
  t.in_features = w.in_features;
  t.data = tile.data();
  for (int64_t r0 = 0; r0 < row_count; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, row_count - r0);
    DequantTile(w, row_begin + r0, rows, tile.data());
    t.out_features = rows;
    if (xs.split) {
      Rows<true>(xs, t, 0, rows, y + r0, ldy);
    } else {
      Rows<false>(xs, t, 0, rows, y + r0, ldy);
    }
  }
#else
  (void)w, (void)row_begin, (void)y, (void)ldy;
#endif
}

}  // namespace dsv3::engine
