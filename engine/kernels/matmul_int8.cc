#include "engine/kernels/matmul_int8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/dtype.h"
#include "engine/kernels/quantize.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's intrinsic headers trip -W(maybe-)uninitialized on their own _mm512_undefined_*
// placeholders (a known false positive, GCC PR 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define DSV3_HAVE_VNNI_KERNEL 1
#endif

namespace dsv3::engine {
namespace {

constexpr int64_t kGroup = kQuantGroup;  // the layout's group width
constexpr int64_t kLane = 4;             // columns a vpdpbusd lane sums

#if DSV3_HAVE_VNNI_KERNEL

#define DSV3_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define DSV3_VNNI_INLINE DSV3_VNNI __attribute__((always_inline)) inline

// Activation rows a pass over the weights meets: their chunks (192 bytes per 64 columns and
// row: 1.5 MB at 4,096 columns) stay in L2 while each weight row meets them all; more rows
// (prefill) take the weights again, from L3 or memory, per block.
constexpr int64_t kRowBlock = 64;

// Least prefetch distance in the weight stream (as matmul_direct.cc: 8 KiB ahead).
constexpr int64_t kPrefetchBytes = 8192;

bool CpuHasVnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return has;
}

// The scales of the two groups of 64 columns as f32 lanes (0-7: s[0], 8-15: s[1]); `tail`:
// only s[0] exists (the row's last group).
DSV3_VNNI_INLINE __m512 PairScales(const uint16_t* s, bool tail) {
  if (tail) return _mm512_set1_ps(_cvtsh_ss(s[0]));
  uint32_t two;
  std::memcpy(&two, s, sizeof(two));
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(two)));
  const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(f));
}

// The nibble bytes of a kQ4/kQ6 chunk at p (linear.h) placed so that the low 4 bits of byte c
// are column c's (bits 4-7 are another column's): the 32 bytes broadcast to both halves, the
// upper half shifted down 4 (columns 32-63 are the high nibbles); a row's last chunk of 32
// columns (`tail`): its 16 bytes in every lane, lane 1 shifted (columns 16-31).
DSV3_VNNI_INLINE __m512i Nibbles(const uint8_t* p, bool tail) {
  if (!tail) {
    const __m512i both =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_mask_srli_epi16(both, 0xFFFF0000u, both, 4);
  }
  const __m512i once = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_mask_srli_epi16(once, 0x0000FF00u, once, 4);
}

// 64 weights (two groups, natural column order) of a row as unsigned bytes, code + offset.
// `tail`: only the first group exists; the other 32 lanes' bytes are then multiplied by
// activation codes of 0.
template <DType D>
DSV3_VNNI_INLINE __m512i LoadUnsigned(const uint8_t* row, int64_t c, bool tail) {
  if constexpr (D == DType::kQ8) {
    const __mmask64 mask = tail ? 0xFFFFFFFFull : ~0ull;
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, row + c), _mm512_set1_epi8(-128));
  } else {
    return _mm512_and_si512(Nibbles(row + c / 2, tail), _mm512_set1_epi8(0x0F));
  }
}

// kQ6 (linear.h): the chunk's nibble bytes broadcast to both halves (columns 32-63 are the
// high nibbles), its top-bit bytes to all four 128-bit lanes (lane L's columns 16L + j: bit
// pair L of byte j), rotated into bits 4-5 per 32-bit lane; 4 operations beside the loads.
// The row's last chunk of 32 columns (`tail`): nibbles of byte j are columns j and j + 16, and
// the 8 top-bit bytes hold columns j + 8p in pair p.
template <>
DSV3_VNNI_INLINE __m512i LoadUnsigned<DType::kQ6>(const uint8_t* row, int64_t c, bool tail) {
  const uint8_t* p = row + c / 4 * 3;
  const __m512i nibbles = Nibbles(p, tail);
  __m512i top;
  if (!tail) {
    top = _mm512_rolv_epi32(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32))),
        _mm512_set_epi32(30, 30, 30, 30, 0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4));
  } else {
    std::int64_t tops;
    std::memcpy(&tops, p + 16, sizeof(tops));
    top = _mm512_rolv_epi32(_mm512_set1_epi64(tops),
                            _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 30, 30, 0, 0, 2, 2, 4, 4));
  }
  // (nibbles & 0x0F) | (top & 0x30)
  return _mm512_ternarylogic_epi32(_mm512_and_si512(top, _mm512_set1_epi8(0x30)), nibbles,
                                   _mm512_set1_epi8(0x0F), 0xF8);
}

// Bytes of a row of k columns, and the byte of column c (a multiple of 64) within it.
template <DType D>
DSV3_VNNI_INLINE int64_t RowBytes(int64_t k) {
  return Linear::RowBytes(D, k);
}

// Columns [c, c + 64) of Block (kTail: the row's last 32 columns): a compile-time tail keeps
// the main loop free of the tail's branches and constants (with `tail` a runtime flag, GCC 12
// laid the kQ6 loop out as jumps between the two variants, rebuilt its constants and spilled
// its pointers every step: 1.8x kQ4's time a weight, where it has 1.3x the operations).
template <DType D, int NR, int MB, bool kTail>
DSV3_VNNI_INLINE void BlockStep(const Int8Activations::Chunk* chunk, const uint8_t* const* rows,
                                const uint16_t* const* scales, const uint8_t* unpacked,
                                int64_t ahead, int64_t c, __m512 (&acc)[NR][MB]) {
  __m512i wv[NR];
  __m512 sv[NR];
#pragma GCC unroll 4
  for (int n = 0; n < NR; ++n) {
    if (unpacked != nullptr) {
      wv[n] = _mm512_load_si512(rows[n] + c);
    } else {
      const uint8_t* at = rows[n] + RowBytes<D>(c);
      if (D != DType::kQ4 || (c & 127) == 0) {  // kQ4: a step is half a line
        _mm_prefetch(reinterpret_cast<const char*>(at + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(at + 2 * ahead), _MM_HINT_T1);
      }
      wv[n] = LoadUnsigned<D>(rows[n], c, kTail);
    }
    sv[n] = PairScales(scales[n] + c / kGroup, kTail);
  }
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) {
    const __m512i x = _mm512_loadu_si512(chunk[i].codes);
    const __m512i o = _mm512_loadu_si512(chunk[i].lane_offset);
    const __m512 s = _mm512_loadu_ps(chunk[i].lane_scale);
#pragma GCC unroll 4
    for (int n = 0; n < NR; ++n) {
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(o, wv[n], x));
      acc[n][i] = _mm512_fmadd_ps(dot, _mm512_mul_ps(sv[n], s), acc[n][i]);
    }
  }
}

// MB activation rows (1..4) from i0 times NR weight rows (1..4) starting at r. With
// `unpacked` (kQ4/kQ6 rows already made bytes by UnpackRows, `stride` bytes apart) the weights
// are read from there instead.
template <DType D, int NR, int MB>
DSV3_VNNI void Block(const Int8Activations& xq, int64_t i0, const Linear& w, int64_t r,
                     const uint8_t* unpacked, int64_t stride, float out[4][4]) {
  const int64_t k = w.in_features;
  const int64_t groups = k / kGroup;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* rows[NR];
  const uint16_t* scales[NR];
  __m512 acc[NR][MB];
#pragma GCC unroll 4
  for (int n = 0; n < NR; ++n) {
    rows[n] = unpacked != nullptr ? unpacked + n * stride : base + (r + n) * RowBytes<D>(k);
    scales[n] = w.group_scales.data() + (r + n) * groups;
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) acc[n][i] = _mm512_setzero_ps();
  }
  // At least the same columns of the next NR rows (the next block's): with long rows a fixed
  // distance reaches only rows already streaming (as matmul_direct.cc's four-row kernel), and
  // twice that into L2 (the same reason as there).
  const int64_t ahead = std::max<int64_t>(kPrefetchBytes, NR * RowBytes<D>(k));
  const Int8Activations::Chunk* chunk = xq.chunks.data() + i0;
  const int64_t full = k / 64 * 64;
  int64_t c = 0;
  for (; c < full; c += 64, chunk += xq.m) {
    BlockStep<D, NR, MB, false>(chunk, rows, scales, unpacked, ahead, c, acc);
  }
  if (c < k) BlockStep<D, NR, MB, true>(chunk, rows, scales, unpacked, ahead, c, acc);
#pragma GCC unroll 4
  for (int n = 0; n < NR; ++n) {
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) out[n][i] = _mm512_reduce_add_ps(acc[n][i]);
  }
}

template <DType D, int NR>
DSV3_VNNI void BlockRows(const Int8Activations& xq, int64_t i0, int mb, const Linear& w, int64_t r,
                         const uint8_t* unpacked, int64_t stride, float out[4][4]) {
  switch (mb) {
    case 1:
      return Block<D, NR, 1>(xq, i0, w, r, unpacked, stride, out);
    case 2:
      return Block<D, NR, 2>(xq, i0, w, r, unpacked, stride, out);
    case 3:
      return Block<D, NR, 3>(xq, i0, w, r, unpacked, stride, out);
    default:
      return Block<D, NR, 4>(xq, i0, w, r, unpacked, stride, out);
  }
}

// From this many activation rows, kQ6 weight rows are unpacked once (UnpackRows) rather than
// once per group of 4 activation rows. matmul_bench [129280, 1024], 2 threads, two runs each
// way: time 0.82-0.92x at 16 rows and 0.87-0.88x at 32, but 1.3-1.7x at 8 (probably the
// unpacking pass waiting on memory with no compute beside it). kQ4 took 1.07-1.09x at 16 and
// 1.45-2x at 8, so it is unpacked per group (above 24 rows it takes bf16 tiles on this CPU).
constexpr int64_t kUnpackMinRows = 16;

// Weight rows r .. r + nr - 1 of kQ4/kQ6 as the unsigned bytes LoadUnsigned makes, 64 a chunk,
// `stride` bytes a row: a block of weights meets every group of 4 activation rows, and
// unpacking it once (into L1) instead of per group leaves the nibble and bit work at once per
// weight, as kQ8's xor is. The rows stream from memory here, prefetched.
template <DType D>
DSV3_VNNI void UnpackRows(const Linear& w, int64_t r, int nr, uint8_t* out, int64_t stride) {
  const int64_t k = w.in_features;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t ahead = std::max<int64_t>(kPrefetchBytes, 4 * RowBytes<D>(k));
  for (int n = 0; n < nr; ++n) {
    const uint8_t* row = base + (r + n) * RowBytes<D>(k);
    for (int64_t c = 0; c < k; c += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(row + RowBytes<D>(c) + ahead), _MM_HINT_T0);
      _mm512_store_si512(out + n * stride + c, LoadUnsigned<D>(row, c, c + 64 > k));
    }
  }
}

// Blocks of 4 weight rows x up to 4 activation rows: 16 accumulators, and each weight vector
// unpacked once per 4 activation rows; a weight block is re-read from L1/L2 for every 4
// activation rows beyond the first 4.
template <DType D>
DSV3_VNNI void RowsVnni(const Int8Activations& xq, const Linear& w, int64_t row_begin,
                        int64_t row_count, float* y, int64_t ldy) {
  float out[4][4];
  const int64_t stride = (w.in_features + 63) / 64 * 64;
  struct alignas(64) Line {
    uint8_t bytes[64];
  };
  thread_local std::vector<Line> buffer;  // 4 unpacked rows
  uint8_t* unpacked = nullptr;
  if (D == DType::kQ6 && xq.m >= kUnpackMinRows) {
    buffer.resize(static_cast<size_t>(4 * stride / 64));
    unpacked = buffer.data()->bytes;
  }
  for (int64_t ib = 0; ib < xq.m; ib += kRowBlock) {
    const int64_t ie = std::min(xq.m, ib + kRowBlock);
    for (int64_t j = 0; j < row_count;) {
      const int64_t left = row_count - j;
      const int nr = left >= 4 ? 4 : (left >= 2 ? 2 : 1);
      if (unpacked != nullptr) UnpackRows<D>(w, row_begin + j, nr, unpacked, stride);
      for (int64_t i0 = ib; i0 < ie; i0 += 4) {
        const int mb = static_cast<int>(std::min<int64_t>(4, ie - i0));
        if (nr == 4) {
          BlockRows<D, 4>(xq, i0, mb, w, row_begin + j, unpacked, stride, out);
        } else if (nr == 2) {
          BlockRows<D, 2>(xq, i0, mb, w, row_begin + j, unpacked, stride, out);
        } else {
          BlockRows<D, 1>(xq, i0, mb, w, row_begin + j, unpacked, stride, out);
        }
        for (int n = 0; n < nr; ++n) {
          for (int i = 0; i < mb; ++i) y[(i0 + i) * ldy + j + n] = out[n][i];
        }
      }
      j += nr;
    }
  }
}

// round(x * inv) to nearest even, clamped to [-127, 127], as 16 int8.
DSV3_VNNI_INLINE __m128i QuantizeSixteen(__m512 x, __m512 inv) {
  const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT);
  const __m512 clamped =
      _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(clamped));
}

// One row's 64-column chunk (`groups`: 1 or 2 groups of 32 exist) as QuantizeActivations
// defines it, 16 columns a vector: the same float operations in the same order (absmax, then
// v * (127 / absmax) rounded to nearest even, clamped), so the codes and scales are the scalar
// definition's bit for bit. One vpdpbusd of the codes against bytes of 1 sums each lane's 4.
DSV3_VNNI void QuantizeChunkVnni(const float* v, int64_t groups, int32_t offset,
                                 Int8Activations::Chunk* chunk) {
  __m128i codes[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                      _mm_setzero_si128()};
  float scale[2] = {0.0f, 0.0f};
  for (int64_t h = 0; h < groups; ++h) {
    const __m512 a = _mm512_loadu_ps(v + h * kGroup);
    const __m512 b = _mm512_loadu_ps(v + h * kGroup + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    codes[2 * h] = QuantizeSixteen(a, inv);
    codes[2 * h + 1] = QuantizeSixteen(b, inv);
    scale[h] = amax / 127.0f;
  }
  const __m512i all =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(codes[1], codes[0])),
                         _mm256_set_m128i(codes[3], codes[2]), 1);
  _mm512_storeu_si512(chunk->codes, all);
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), all);
  _mm512_storeu_si512(chunk->lane_offset, _mm512_mullo_epi32(sums, _mm512_set1_epi32(-offset)));
  const __m512 scales =
      _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(scale[0]), _mm512_set1_ps(scale[1]));
  _mm512_storeu_ps(chunk->lane_scale, scales);
}

#endif  // DSV3_HAVE_VNNI_KERNEL

}  // namespace

bool Int8KernelApplies(const Linear& w) {
#if DSV3_HAVE_VNNI_KERNEL
  return w.int8_activations &&
         (w.dtype == DType::kQ8 || w.dtype == DType::kQ4 || w.dtype == DType::kQ6) &&
         w.group == kGroup && w.in_features % kGroup == 0 && CpuHasVnni();
#else
  (void)w;
  return false;
#endif
}

void QuantizeActivations(const float* x, int64_t m, int64_t ldx, int64_t k, DType dtype,
                         Int8Activations* out) {
  const int32_t offset = dtype == DType::kQ8 ? 128 : (dtype == DType::kQ4 ? 8 : 32);
  const int64_t chunks = (k + 63) / 64;
  out->m = m;
  out->k = k;
  out->chunks.resize(static_cast<size_t>(chunks * m));
#if DSV3_HAVE_VNNI_KERNEL
  if (CpuHasVnni()) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t ch = 0; ch < chunks; ++ch) {
        QuantizeChunkVnni(x + i * ldx + ch * 64, std::min<int64_t>(2, (k - ch * 64) / kGroup),
                          offset, &out->chunks[static_cast<size_t>(ch * m + i)]);
      }
    }
    return;
  }
#endif
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * ldx;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      Int8Activations::Chunk& chunk = out->chunks[static_cast<size_t>(ch * m + i)];
      std::memset(&chunk, 0, sizeof(chunk));
      for (int64_t h = 0; h < 2 && ch * 64 + h * kGroup < k; ++h) {
        const float* v = row + ch * 64 + h * kGroup;
        float amax = 0.0f;
        for (int64_t c = 0; c < kGroup; ++c) amax = std::max(amax, std::fabs(v[c]));
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t* q = chunk.codes + h * kGroup;
        for (int64_t c = 0; c < kGroup; ++c) {
          q[c] = static_cast<int8_t>(std::clamp(std::nearbyint(v[c] * inv), -127.0f, 127.0f));
        }
        for (int64_t l = 0; l < kGroup / kLane; ++l) {
          int32_t sum = 0;
          for (int64_t c = 0; c < kLane; ++c) sum += q[l * kLane + c];
          chunk.lane_scale[h * (kGroup / kLane) + l] = amax / 127.0f;
          chunk.lane_offset[h * (kGroup / kLane) + l] = -offset * sum;
        }
      }
    }
  }
}

void MatMulRowsInt8(const Int8Activations& xq, const Linear& w, int64_t row_begin,
                    int64_t row_count, float* y, int64_t ldy) {
  if (xq.m <= 0 || row_count <= 0) return;
#if DSV3_HAVE_VNNI_KERNEL
  if (w.dtype == DType::kQ8) return RowsVnni<DType::kQ8>(xq, w, row_begin, row_count, y, ldy);
  if (w.dtype == DType::kQ6) return RowsVnni<DType::kQ6>(xq, w, row_begin, row_count, y, ldy);
  return RowsVnni<DType::kQ4>(xq, w, row_begin, row_count, y, ldy);
#else
  (void)w, (void)row_begin, (void)y, (void)ldy;
#endif
}

}  // namespace dsv3::engine
