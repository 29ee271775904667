#include "engine/kernels/matmul_direct.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/avx512.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {
namespace {

// Portable path: dequantise one weight row into an L1-sized buffer, then dot it with each
// activation row (Dot is multiversioned for AVX2 / baseline).
void RowsGeneric(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                 int64_t row_count, float* y, int64_t ldy) {
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(w.in_features));
  for (int64_t j = 0; j < row_count; ++j) {
    w.DequantRow(row_begin + j, 0, w.in_features, row.data());
    for (int64_t i = 0; i < m; ++i) y[i * ldy + j] = Dot(x + i * ldx, row.data(), w.in_features);
  }
}

#if DSV3_HAVE_AVX512_KERNEL

// 16 weights starting at byte `p` as f32 (lanes outside `mask` read nothing and are 0).
// FP8 e4m3: the byte moved so that sign -> bit 31, exponent and mantissa -> bits 20..26 is an
// f32 equal to the code's value times 2^-120 (subnormal codes become f32 subnormals: exact
// with DAZ off, the default); the caller folds 2^120 into the block scale. Sign-extending the
// byte puts copies of the sign in bits 27..31 after the shift, so one AND finishes it (three
// instructions: batch-1 FP8 decode is bound by them, not by memory). Codes 0x7F/0xFF (NaN)
// decode as +-480; checkpoints do not contain them.
template <DType D>
DSV3_AVX512_INLINE __m512 LoadW(const uint8_t* p, __mmask16 mask) {
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(mask, p);
  } else if constexpr (D == DType::kBF16) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  } else if constexpr (D == DType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
  } else if constexpr (D == DType::kQ8) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p)));
  } else {
    const __m512i c = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p));
    const __m512i moved = _mm512_slli_epi32(c, 20);
    return _mm512_castsi512_ps(
        _mm512_and_si512(moved, _mm512_set1_epi32(static_cast<int>(0x87F00000u))));
  }
}

template <DType D>
constexpr int64_t kElemBytes = D == DType::kF32 ? 4
                                                : (D == DType::kF8E4M3 || D == DType::kQ8 ? 1 : 2);
// FP8: one scale per block of block_rows x block_cols; kQ8: one per group of a row.
template <DType D>
constexpr bool kScaled = D == DType::kF8E4M3 || D == DType::kQ8;
// FP8 in the decode kernels: a block's weights are summed against x unscaled and the sum is
// scaled once per block (128 columns), a multiply per vector fewer. kQ8's groups (32 columns)
// keep scaling each vector.
template <DType D>
constexpr bool kScaleAfterBlock = D == DType::kF8E4M3;

constexpr float kTwoPow120 = 1.329227995784916e36f;  // 2^120

// Prefetch distance in the weight stream (a few pages: DRAM latency x per-core bandwidth).
// (8 KiB measured best of 2-32 KiB for batch-1 decode of the bench model.)
constexpr int64_t kPrefetchBytes = 8192;

template <DType D, bool kMasked>
DSV3_AVX512_INLINE __m512 LoadScaled(const uint8_t* p, __mmask16 mask, __m512 scale) {
  const __m512 v = kMasked ? LoadW<D>(p, mask) : LoadW<D>(p, static_cast<__mmask16>(0xFFFF));
  if constexpr (kScaled<D>) return _mm512_mul_ps(v, scale);
  return v;
}

// What the decode kernels multiply x by: scaled weights, or unscaled (kScaleAfterBlock).
template <DType D, bool kMasked>
DSV3_AVX512_INLINE __m512 LoadForDot(const uint8_t* p, __mmask16 mask, __m512 scale) {
  if constexpr (kScaleAfterBlock<D>) {
    return kMasked ? LoadW<D>(p, mask) : LoadW<D>(p, static_cast<__mmask16>(0xFFFF));
  } else {
    return LoadScaled<D, kMasked>(p, mask, scale);
  }
}

// Columns [c, c + 16) (kMasked: only the lanes of `mask`) of weight rows pa, pb against MB
// activation rows.
template <DType D, int MB, bool kMasked>
DSV3_AVX512_INLINE void Step(const float* x, int64_t ldx, const uint8_t* pa, const uint8_t* pb,
                             int64_t c, __mmask16 mask, __m512 sa, __m512 sb, __m512* acc_a,
                             __m512* acc_b) {
  if constexpr (!kMasked) {
    // Weights in 4 KiB pages (a file mapping, where huge pages are off or refused) stop the
    // hardware prefetchers at every page boundary: ask for the lines kPrefetchBytes ahead.
    _mm_prefetch(reinterpret_cast<const char*>(pa + c * kElemBytes<D> + kPrefetchBytes),
                 _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(pb + c * kElemBytes<D> + kPrefetchBytes),
                 _MM_HINT_T0);
  }
  const __m512 wa = LoadForDot<D, kMasked>(pa + c * kElemBytes<D>, mask, sa);
  const __m512 wb = LoadForDot<D, kMasked>(pb + c * kElemBytes<D>, mask, sb);
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
    const __m512 xv =
        kMasked ? _mm512_maskz_loadu_ps(mask, x + i * ldx + c) : _mm512_loadu_ps(x + i * ldx + c);
    acc_a[i] = _mm512_fmadd_ps(wa, xv, acc_a[i]);
    acc_b[i] = _mm512_fmadd_ps(wb, xv, acc_b[i]);
  }
}

// MB activation rows (1..8) times weight rows ra and rb (rb may equal ra: its result is then
// dropped by the caller). Each weight vector is dequantised once per MB rows.
template <DType D, int MB>
DSV3_AVX512 void BlockDense(const float* x, int64_t ldx, const Linear& w, int64_t ra, int64_t rb,
                            float out[2][8]) {
  const int64_t k = w.in_features;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* pa = base + ra * k * kElemBytes<D>;
  const uint8_t* pb = base + rb * k * kElemBytes<D>;
  constexpr bool kFp8 = D == DType::kF8E4M3;
  constexpr bool kGroups = D == DType::kQ8;
  const int64_t bc = kFp8 ? w.block_cols : (kGroups ? w.group : k);
  const int64_t scale_cols = kScaled<D> ? (k + bc - 1) / bc : 0;
  const float* sa_row = kFp8 ? w.scale_inv.data() + (ra / w.block_rows) * scale_cols : nullptr;
  const float* sb_row = kFp8 ? w.scale_inv.data() + (rb / w.block_rows) * scale_cols : nullptr;
  const uint16_t* ga_row = kGroups ? w.group_scales.data() + ra * scale_cols : nullptr;
  const uint16_t* gb_row = kGroups ? w.group_scales.data() + rb * scale_cols : nullptr;
  // Fully unrolled over MB so the accumulators live in registers. kScaleAfterBlock: acc_* hold
  // the block's sums, folded into tot_* at its end.
  __m512 acc_a[MB], acc_b[MB], tot_a[MB], tot_b[MB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) acc_a[i] = acc_b[i] = tot_a[i] = tot_b[i] = _mm512_setzero_ps();
  for (int64_t c0 = 0, blk = 0; c0 < k; c0 += bc, ++blk) {
    const int64_t c1 = std::min(k, c0 + bc);
    __m512 sa = _mm512_set1_ps(1.0f), sb = sa;
    if constexpr (kFp8) {
      sa = _mm512_set1_ps(sa_row[blk] * kTwoPow120);
      sb = _mm512_set1_ps(sb_row[blk] * kTwoPow120);
    } else if constexpr (kGroups) {
      sa = _mm512_set1_ps(_cvtsh_ss(ga_row[blk]));
      sb = _mm512_set1_ps(_cvtsh_ss(gb_row[blk]));
    }
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16) {
      Step<D, MB, false>(x, ldx, pa, pb, c, 0, sa, sb, acc_a, acc_b);
    }
    if (c < c1) {
      const auto mask = static_cast<__mmask16>((1u << static_cast<unsigned>(c1 - c)) - 1u);
      Step<D, MB, true>(x, ldx, pa, pb, c, mask, sa, sb, acc_a, acc_b);
    }
    if constexpr (kScaleAfterBlock<D>) {
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) {
        tot_a[i] = _mm512_fmadd_ps(acc_a[i], sa, tot_a[i]);
        tot_b[i] = _mm512_fmadd_ps(acc_b[i], sb, tot_b[i]);
        acc_a[i] = acc_b[i] = _mm512_setzero_ps();
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
    out[0][i] = _mm512_reduce_add_ps(kScaleAfterBlock<D> ? tot_a[i] : acc_a[i]);
    out[1][i] = _mm512_reduce_add_ps(kScaleAfterBlock<D> ? tot_b[i] : acc_b[i]);
  }
}

// One activation row against four weight rows (r0 .. r0 + 3): at batch 1 the kernel only
// streams weights, and four row streams per core keep more lines in flight than two
// (measured with bench/matmul_bench) while the four accumulators hide the FMA latency. Each
// step prefetches at least kPrefetchBytes ahead, and at least the same columns of the next
// four rows (the next call's): the hardware prefetchers stop at page boundaries, and with
// long rows a fixed distance reaches only the rows already streaming (FP8 at 7,168 columns,
// medians: 1.25x on one thread, 1.45x on two; bench/RESULTS.md). A second prefetch, twice as
// far, into L2 only (T1): one core's misses in flight to L1 cannot cover DRAM latency at the
// bandwidth a core can take, and short rows (1,024 columns) never run long enough for the
// hardware's L2 streamer (1.5-2x at batch 1 on one thread; RESULTS.md, session 19). Per row it
// does what BlockDense does, in the same order (the same scaling, block sums and tail), so a
// row's result does not depend on how many rows came with it: an expert's output is the same
// whether or not its tokens were batched.
template <DType D>
DSV3_AVX512 void BlockDenseRow4(const float* x, const Linear& w, int64_t r0, float out[4]) {
  const int64_t k = w.in_features;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* p[4];
  for (int r = 0; r < 4; ++r) p[r] = base + (r0 + r) * k * kElemBytes<D>;
  constexpr bool kFp8 = D == DType::kF8E4M3;
  constexpr bool kGroups = D == DType::kQ8;
  const int64_t bc = kFp8 ? w.block_cols : (kGroups ? w.group : k);
  const int64_t scale_cols = kScaled<D> ? (k + bc - 1) / bc : 0;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  const int64_t ahead = std::max(kPrefetchBytes, 4 * k * kElemBytes<D>);
  for (int64_t c0 = 0, blk = 0; c0 < k; c0 += bc, ++blk) {
    const int64_t c1 = std::min(k, c0 + bc);
    __m512 s[4];
    for (int r = 0; r < 4; ++r) {
      if constexpr (kFp8) {
        s[r] =
            _mm512_set1_ps(w.scale_inv[((r0 + r) / w.block_rows) * scale_cols + blk] * kTwoPow120);
      } else if constexpr (kGroups) {
        s[r] = _mm512_set1_ps(_cvtsh_ss(w.group_scales[(r0 + r) * scale_cols + blk]));
      } else {
        s[r] = _mm512_set1_ps(1.0f);
      }
    }
    // kScaleAfterBlock: the block's sums, then folded into acc; else acc itself.
    __m512 part[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                      _mm512_setzero_ps()};
    __m512* sum = kScaleAfterBlock<D> ? part : acc;
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16) {
      const __m512 xv = _mm512_loadu_ps(x + c);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(p[r] + c * kElemBytes<D> + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p[r] + c * kElemBytes<D> + 2 * ahead),
                     _MM_HINT_T1);
        sum[r] =
            _mm512_fmadd_ps(LoadForDot<D, false>(p[r] + c * kElemBytes<D>, 0, s[r]), xv, sum[r]);
      }
    }
    if (c < c1) {
      const auto mask = static_cast<__mmask16>((1u << static_cast<unsigned>(c1 - c)) - 1u);
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + c);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        sum[r] =
            _mm512_fmadd_ps(LoadForDot<D, true>(p[r] + c * kElemBytes<D>, mask, s[r]), xv, sum[r]);
      }
    }
    if constexpr (kScaleAfterBlock<D>) {
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) acc[r] = _mm512_fmadd_ps(part[r], s[r], acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// kQ4 codes of a row's last 32 columns (16 bytes at p) as two f32 vectors times `scale`:
// columns 0-15 are the low nibbles, 16-31 the high ones.
DSV3_AVX512_INLINE void LoadQ4(const uint8_t* p, __m512 scale, __m512* lo, __m512* hi) {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i eight = _mm512_set1_epi32(8);
  const __m512i low = _mm512_and_si512(bytes, _mm512_set1_epi32(0xF));
  const __m512i high = _mm512_srli_epi32(bytes, 4);
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(low, eight)), scale);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(high, eight)), scale);
}

// Group h (0 or 1) of a 64-column kQ4 chunk (32 bytes at p): columns 32h + j are the low
// (h = 0) or high (h = 1) nibbles of bytes j, as two f32 vectors times `scale`.
DSV3_AVX512_INLINE void LoadQ4Half(const uint8_t* p, int h, __m512 scale, __m512* lo, __m512* hi) {
  const __m512i mask = _mm512_set1_epi32(0xF);
  const __m512i eight = _mm512_set1_epi32(8);
  const __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
  const __m512i low = _mm512_and_si512(_mm512_srli_epi32(a, 4 * h), mask);
  const __m512i high = _mm512_and_si512(_mm512_srli_epi32(b, 4 * h), mask);
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(low, eight)), scale);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(high, eight)), scale);
}

// kQ6 group h (0 or 1) of the 64-column chunk at p (linear.h), or the 32-column chunk at a
// row's end (`full` false), as two f32 vectors times `scale`: each code's low 4 bits from its
// nibble, its top 2 bits from its bit pair of the chunk's last W / 4 bytes.
DSV3_AVX512_INLINE void LoadQ6(const uint8_t* p, int h, bool full, __m512 scale, __m512* lo,
                               __m512* hi) {
  const __m512i three = _mm512_set1_epi32(3);
  __m512i low, high, top_lo, top_hi;
  if (full) {  // columns 32h + j: nibble byte j % 32 (high nibble when h = 1), pair 2h + j / 16
    const __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i b =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    const __m512i tops =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)));
    const __m512i mask = _mm512_set1_epi32(0xF);
    low = _mm512_and_si512(_mm512_srli_epi32(a, 4 * h), mask);
    high = _mm512_and_si512(_mm512_srli_epi32(b, 4 * h), mask);
    top_lo = _mm512_and_si512(_mm512_srli_epi32(tops, 4 * h), three);
    top_hi = _mm512_and_si512(_mm512_srli_epi32(tops, 4 * h + 2), three);
  } else {  // columns j: nibble byte j % 16, pair j / 8
    const __m512i bytes =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m128i top8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16));
    const __m512i tops = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(top8, top8));  // byte j % 8
    low = _mm512_and_si512(bytes, _mm512_set1_epi32(0xF));
    high = _mm512_srli_epi32(bytes, 4);
    top_lo = _mm512_and_si512(
        _mm512_srlv_epi32(tops, _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0)),
        three);
    top_hi = _mm512_and_si512(
        _mm512_srlv_epi32(tops, _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4)),
        three);
  }
  const __m512i offset = _mm512_set1_epi32(32);
  low = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(top_lo, 4)), offset);
  high = _mm512_sub_epi32(_mm512_or_si512(high, _mm512_slli_epi32(top_hi, 4)), offset);
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(low), scale);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(high), scale);
}

// Group g (32 columns) of a kQ4 or kQ6 row of k columns starting at `row`, as two f32 vectors
// times `scale`.
template <DType D>
DSV3_AVX512_INLINE void LoadGroup(const uint8_t* row, int64_t g, int64_t k, __m512 scale,
                                  __m512* lo, __m512* hi) {
  if constexpr (D == DType::kQ4) {
    const uint8_t* chunk = row + g / 2 * 32;
    if (g / 2 * 64 + 64 <= k) {  // columns 32h + j: byte j % 32, high nibble when h = 1
      LoadQ4Half(chunk, static_cast<int>(g % 2), scale, lo, hi);
    } else {
      LoadQ4(chunk, scale, lo, hi);
    }
  } else {
    LoadQ6(row + g / 2 * 48, static_cast<int>(g % 2), g / 2 * 64 + 64 <= k, scale, lo, hi);
  }
}

// Bytes of a group of 32 columns of kQ4 or kQ6 codes, on average (for prefetch distances).
template <DType D>
constexpr int64_t kGroupBytes = D == DType::kQ4 ? 16 : 24;

// As BlockDense for kQ4 and kQ6, a group (32 columns, one scale) at a time.
template <DType D, int MB>
DSV3_AVX512 void BlockGroups(const float* x, int64_t ldx, const Linear& w, int64_t ra, int64_t rb,
                             float out[2][8]) {
  const int64_t k = w.in_features;
  const int64_t groups = k / w.group;
  const auto* base = static_cast<const uint8_t*>(w.data);
  constexpr int64_t kBytes = kGroupBytes<D>;
  const uint8_t* pa = base + ra * Linear::RowBytes(D, k);
  const uint8_t* pb = base + rb * Linear::RowBytes(D, k);
  const uint16_t* ga = w.group_scales.data() + ra * groups;
  const uint16_t* gb = w.group_scales.data() + rb * groups;
  __m512 acc_a[MB], acc_b[MB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) acc_a[i] = acc_b[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    if ((g * kBytes) % 64 < kBytes) {  // one prefetch per 64-byte line of each row
      _mm_prefetch(reinterpret_cast<const char*>(pa + g * kBytes + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(pb + g * kBytes + kPrefetchBytes), _MM_HINT_T0);
    }
    __m512 wa_lo, wa_hi, wb_lo, wb_hi;
    LoadGroup<D>(pa, g, k, _mm512_set1_ps(_cvtsh_ss(ga[g])), &wa_lo, &wa_hi);
    LoadGroup<D>(pb, g, k, _mm512_set1_ps(_cvtsh_ss(gb[g])), &wb_lo, &wb_hi);
    const int64_t c = g * 32;
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) {
      const __m512 x_lo = _mm512_loadu_ps(x + i * ldx + c);
      const __m512 x_hi = _mm512_loadu_ps(x + i * ldx + c + 16);
      acc_a[i] = _mm512_fmadd_ps(wa_hi, x_hi, _mm512_fmadd_ps(wa_lo, x_lo, acc_a[i]));
      acc_b[i] = _mm512_fmadd_ps(wb_hi, x_hi, _mm512_fmadd_ps(wb_lo, x_lo, acc_b[i]));
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
    out[0][i] = _mm512_reduce_add_ps(acc_a[i]);
    out[1][i] = _mm512_reduce_add_ps(acc_b[i]);
  }
}

template <DType D, int MB>
DSV3_AVX512_INLINE void Block(const float* x, int64_t ldx, const Linear& w, int64_t ra, int64_t rb,
                              float out[2][8]) {
  if constexpr (D == DType::kQ4 || D == DType::kQ6) {
    BlockGroups<D, MB>(x, ldx, w, ra, rb, out);
  } else {
    BlockDense<D, MB>(x, ldx, w, ra, rb, out);
  }
}

template <DType D>
DSV3_AVX512 void RowsAvx512(const float* x, int64_t m, int64_t ldx, const Linear& w,
                            int64_t row_begin, int64_t row_count, float* y, int64_t ldy) {
  float out[2][8];
  int64_t j = 0;
  // Batch 1 of unscaled weights (BF16 above all) and FP8: four rows at a time, 1.2-1.3x the
  // pairs (bench/RESULTS.md). kQ8 keeps the pairs (no gain measured).
  if constexpr (D == DType::kBF16 || D == DType::kF16 || D == DType::kF32 || D == DType::kF8E4M3) {
    if (m == 1) {
      for (; j + 4 <= row_count; j += 4) BlockDenseRow4<D>(x, w, row_begin + j, y + j);
    }
  }
  for (; j < row_count; j += 2) {
    const bool pair = j + 1 < row_count;
    const int64_t ra = row_begin + j;
    const int64_t rb = pair ? ra + 1 : ra;
    for (int64_t i0 = 0; i0 < m; i0 += 8) {
      const int mb = static_cast<int>(std::min<int64_t>(8, m - i0));
      const float* xi = x + i0 * ldx;
      switch (mb) {
        case 1:
          Block<D, 1>(xi, ldx, w, ra, rb, out);
          break;
        case 2:
          Block<D, 2>(xi, ldx, w, ra, rb, out);
          break;
        case 3:
          Block<D, 3>(xi, ldx, w, ra, rb, out);
          break;
        case 4:
          Block<D, 4>(xi, ldx, w, ra, rb, out);
          break;
        case 5:
          Block<D, 5>(xi, ldx, w, ra, rb, out);
          break;
        case 6:
          Block<D, 6>(xi, ldx, w, ra, rb, out);
          break;
        case 7:
          Block<D, 7>(xi, ldx, w, ra, rb, out);
          break;
        default:
          Block<D, 8>(xi, ldx, w, ra, rb, out);
          break;
      }
      for (int i = 0; i < mb; ++i) {
        y[(i0 + i) * ldy + j] = out[0][i];
        if (pair) y[(i0 + i) * ldy + j + 1] = out[1][i];
      }
    }
  }
}

template <DType D>
DSV3_AVX512 void DequantRowGroupsAvx512(const Linear& w, int64_t row, float* out) {
  const int64_t k = w.in_features;
  const int64_t groups = k / w.group;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + row * Linear::RowBytes(D, k);
  const uint16_t* scales = w.group_scales.data() + row * groups;
  for (int64_t g = 0; g < groups; ++g) {
    __m512 lo, hi;
    LoadGroup<D>(p, g, k, _mm512_set1_ps(_cvtsh_ss(scales[g])), &lo, &hi);
    _mm512_storeu_ps(out + g * 32, lo);
    _mm512_storeu_ps(out + g * 32 + 16, hi);
  }
}

template <DType D>
DSV3_AVX512 void DequantRowAvx512(const Linear& w, int64_t row, float* out) {
  if constexpr (D == DType::kQ4 || D == DType::kQ6) {
    return DequantRowGroupsAvx512<D>(w, row, out);
  } else {
    const int64_t k = w.in_features;
    const uint8_t* p = static_cast<const uint8_t*>(w.data) + row * k * kElemBytes<D>;
    constexpr bool kFp8 = D == DType::kF8E4M3;
    constexpr bool kGroups = D == DType::kQ8;
    const int64_t bc = kFp8 ? w.block_cols : (kGroups ? w.group : k);
    const float* s_row =
        kFp8 ? w.scale_inv.data() + (row / w.block_rows) * ((k + bc - 1) / bc) : nullptr;
    const uint16_t* g_row = kGroups ? w.group_scales.data() + row * (k / bc) : nullptr;
    for (int64_t c0 = 0, blk = 0; c0 < k; c0 += bc, ++blk) {
      const int64_t c1 = std::min(k, c0 + bc);
      const __m512 s =
          _mm512_set1_ps(kFp8 ? s_row[blk] * kTwoPow120 : (kGroups ? _cvtsh_ss(g_row[blk]) : 1.0f));
      int64_t c = c0;
      for (; c + 16 <= c1; c += 16) {
        _mm512_storeu_ps(out + c, LoadScaled<D, false>(p + c * kElemBytes<D>, 0, s));
      }
      if (c < c1) {
        const auto mask = static_cast<__mmask16>((1u << static_cast<unsigned>(c1 - c)) - 1u);
        _mm512_mask_storeu_ps(out + c, mask, LoadScaled<D, true>(p + c * kElemBytes<D>, mask, s));
      }
    }
  }
}

// DequantRowAvx512 rounded to bf16 (nearest even) in the same pass, 32 columns a store:
// kQ8, kQ4, kQ6 with k a multiple of 32 (DequantRowBf16's callers check).
template <DType D>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c"))) void
DequantRowBf16Avx512(const Linear& w, int64_t row, uint16_t* out) {
  const int64_t k = w.in_features;
  const int64_t groups = k / w.group;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + row * Linear::RowBytes(D, k);
  const uint16_t* scales = w.group_scales.data() + row * groups;
  for (int64_t g = 0; g < groups; ++g) {
    const __m512 s = _mm512_set1_ps(_cvtsh_ss(scales[g]));
    __m512 lo, hi;
    if constexpr (D == DType::kQ8) {
      lo = LoadScaled<D, false>(p + g * 32, 0, s);
      hi = LoadScaled<D, false>(p + g * 32 + 16, 0, s);
    } else {
      LoadGroup<D>(p, g, k, s, &lo, &hi);
    }
    _mm512_storeu_si512(out + g * 32, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
  }
}

#endif  // DSV3_HAVE_AVX512_KERNEL

}  // namespace

bool DequantRowBf16(const Linear& w, int64_t row, uint16_t* out) {
#if DSV3_HAVE_AVX512_KERNEL
  if (!CpuHasAvx512Bf16() || w.group != 32 || w.in_features % 32 != 0) return false;
  switch (w.dtype) {
    case DType::kQ8:
      DequantRowBf16Avx512<DType::kQ8>(w, row, out);
      return true;
    case DType::kQ4:
      DequantRowBf16Avx512<DType::kQ4>(w, row, out);
      return true;
    case DType::kQ6:
      DequantRowBf16Avx512<DType::kQ6>(w, row, out);
      return true;
    default:
      return false;
  }
#else
  (void)w, (void)row, (void)out;
  return false;
#endif
}

bool DirectKernelUsesAvx512() {
#if DSV3_HAVE_AVX512_KERNEL
  return CpuHasAvx512();
#else
  return false;
#endif
}

void DequantRowFast(const Linear& w, int64_t row, float* out) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) {
    switch (w.dtype) {
      case DType::kF32:
        return DequantRowAvx512<DType::kF32>(w, row, out);
      case DType::kBF16:
        return DequantRowAvx512<DType::kBF16>(w, row, out);
      case DType::kF16:
        return DequantRowAvx512<DType::kF16>(w, row, out);
      case DType::kF8E4M3:
        return DequantRowAvx512<DType::kF8E4M3>(w, row, out);
      case DType::kQ8:
        return DequantRowAvx512<DType::kQ8>(w, row, out);
      case DType::kQ4:
        return DequantRowAvx512<DType::kQ4>(w, row, out);
      case DType::kQ6:
        return DequantRowAvx512<DType::kQ6>(w, row, out);
    }
  }
#endif
  w.DequantRow(row, 0, w.in_features, out);
}

void MatMulRowsDirect(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                      int64_t row_count, float* y, int64_t ldy) {
  if (m <= 0 || row_count <= 0) return;
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) {
    switch (w.dtype) {
      case DType::kF32:
        return RowsAvx512<DType::kF32>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kBF16:
        return RowsAvx512<DType::kBF16>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kF16:
        return RowsAvx512<DType::kF16>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kF8E4M3:
        return RowsAvx512<DType::kF8E4M3>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kQ8:
        return RowsAvx512<DType::kQ8>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kQ4:
        return RowsAvx512<DType::kQ4>(x, m, ldx, w, row_begin, row_count, y, ldy);
      case DType::kQ6:
        return RowsAvx512<DType::kQ6>(x, m, ldx, w, row_begin, row_count, y, ldy);
    }
  }
#endif
  RowsGeneric(x, m, ldx, w, row_begin, row_count, y, ldy);
}

}  // namespace dsv3::engine
