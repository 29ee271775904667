#include "engine/kernels/matmul_fp8.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/dtype.h"
#include "engine/kernels/avx512.h"
#include "engine/kernels/matmul_bf16.h"

namespace dsv3::engine {
namespace {

#if DSV3_HAVE_AVX512_KERNEL

#define DSV3_FP8 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,fma,f16c")))
#define DSV3_FP8_INLINE DSV3_FP8 __attribute__((always_inline)) inline

constexpr int64_t kChunk = 64;  // codes a step: one cache line of a weight row
constexpr int kRowsAPass = 4;   // activation rows whose sums stay in registers

// The bf16 bits of e4m3 code c (sign cleared), split into bytes: exact, e4m3's 3 mantissa bits
// and exponent range fit bf16's (its subnormals are bf16 normals).
struct DecodeTables {
  alignas(64) uint8_t lo[128];
  alignas(64) uint8_t hi[128];
};

const DecodeTables& Tables() {
  static const DecodeTables t = [] {
    DecodeTables d;
    for (int c = 0; c < 128; ++c) {
      const float v = kE4M3ToFloat[static_cast<size_t>(c)];
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      d.lo[c] = static_cast<uint8_t>(bits >> 16);
      d.hi[c] = static_cast<uint8_t>(bits >> 24);
    }
    return d;
  }();
  return t;
}

// x's rows in the order the decode leaves the weights: unpacking the low and high bytes
// interleaves within each 16-byte lane, so of a 64-column chunk the first 32 bf16 words are
// columns 0-7, 16-23, 32-39, 48-55 and the next 32 the other halves.
void PermuteActivations(const Bf16Activations& xs, int64_t k, std::vector<uint16_t>* out) {
  out->resize(static_cast<size_t>(xs.m * k));
  for (int64_t i = 0; i < xs.m; ++i) {
    const uint16_t* src = xs.hi.data() + i * xs.stride;
    uint16_t* dst = out->data() + i * k;
    for (int64_t c = 0; c < k; c += kChunk) {
      for (int lane = 0; lane < 4; ++lane) {
        std::memcpy(dst + c + lane * 8, src + c + lane * 16, 8 * sizeof(uint16_t));
        std::memcpy(dst + c + 32 + lane * 8, src + c + lane * 16 + 8, 8 * sizeof(uint16_t));
      }
    }
  }
}

DSV3_FP8_INLINE __m512bh AsBh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// R weight rows (w[r], their block scales s[r]) against MB activation rows at x (permuted):
// y[i * ldy + r]. `ahead` (bytes, 0: none): prefetch the codes that far past each line read
// (the next rows' same columns), and into L2 twice as far (matmul_direct.cc says why).
template <int R, int MB>
DSV3_FP8 void Block(const uint8_t* const* w, const float* const* s, const uint16_t* x, int64_t k,
                    int64_t bc, int64_t ahead, float* y, int64_t ldy) {
  const DecodeTables& t = Tables();
  const __m512i lo0 = _mm512_load_si512(t.lo), lo1 = _mm512_load_si512(t.lo + 64);
  const __m512i hi0 = _mm512_load_si512(t.hi), hi1 = _mm512_load_si512(t.hi + 64);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 tot[R][MB];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) tot[r][i] = _mm512_setzero_ps();
  }
  for (int64_t c0 = 0, blk = 0; c0 < k; c0 += bc, ++blk) {
    __m512 acc[R][MB];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_ps();
    }
    const int64_t c1 = std::min(k, c0 + bc);  // a last, partial block
    for (int64_t c = c0; c < c1; c += kChunk) {
      __m512i w0[R], w1[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        if (ahead > 0) {
          _mm_prefetch(reinterpret_cast<const char*>(w[r] + c + ahead), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(w[r] + c + 2 * ahead), _MM_HINT_T1);
        }
        const __m512i codes = _mm512_loadu_si512(w[r] + c);
        // vpermt2b reads 7 bits of each index: the sign bit is put back into the high byte.
        const __m512i lo = _mm512_permutex2var_epi8(lo0, codes, lo1);
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, codes, hi1),
                                                     codes, sign, 0xF8);  // hi | (codes & sign)
        w0[r] = _mm512_unpacklo_epi8(lo, hi);
        w1[r] = _mm512_unpackhi_epi8(lo, hi);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        const __m512i h0 = _mm512_loadu_si512(x + i * k + c);
        const __m512i h1 = _mm512_loadu_si512(x + i * k + c + 32);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          acc[r][i] = _mm512_dpbf16_ps(acc[r][i], AsBh(w0[r]), AsBh(h0));
          acc[r][i] = _mm512_dpbf16_ps(acc[r][i], AsBh(w1[r]), AsBh(h1));
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 scale = _mm512_set1_ps(s[r][blk]);
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) tot[r][i] = _mm512_fmadd_ps(acc[r][i], scale, tot[r][i]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) {
    if constexpr (R == 4) {
      _mm_storeu_ps(y + i * ldy, Sum4(tot[0][i], tot[1][i], tot[2][i], tot[3][i]));
    } else {  // summed as Sum4 sums each of its four: a row's bits do not depend on R
      y[i * ldy] = _mm_cvtss_f32(Sum4(tot[0][i], zero, zero, zero));
    }
  }
}

template <int R>
DSV3_FP8 void Pass(const uint8_t* const* w, const float* const* s, const uint16_t* x, int64_t m,
                   int64_t k, int64_t bc, int64_t ahead, float* y, int64_t ldy) {
  switch (m) {
    case 1:
      return Block<R, 1>(w, s, x, k, bc, ahead, y, ldy);
    case 2:
      return Block<R, 2>(w, s, x, k, bc, ahead, y, ldy);
    case 3:
      return Block<R, 3>(w, s, x, k, bc, ahead, y, ldy);
    default:
      return Block<R, 4>(w, s, x, k, bc, ahead, y, ldy);
  }
}

#endif  // DSV3_HAVE_AVX512_KERNEL

}  // namespace

bool Fp8KernelApplies(const Linear& w) {
#if DSV3_HAVE_AVX512_KERNEL
  return w.dtype == DType::kF8E4M3 && w.in_features % kChunk == 0 && w.block_cols > 0 &&
         w.block_cols % kChunk == 0 && CpuHasAvx512Vbmi();
#else
  (void)w;
  return false;
#endif
}

void MatMulRowsFp8(const Bf16Activations& xs, const Linear& w, int64_t row_begin, int64_t row_count,
                   float* y, int64_t ldy) {
  if (xs.m <= 0 || row_count <= 0) return;
#if DSV3_HAVE_AVX512_KERNEL
  const int64_t k = w.in_features;
  const int64_t bc = w.block_cols;
  const int64_t scale_cols = (k + bc - 1) / bc;
  thread_local std::vector<uint16_t> x;
  PermuteActivations(xs, k, &x);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const auto scales = [&](int64_t row) {
    return w.scale_inv.data() + (row / w.block_rows) * scale_cols;
  };
  int64_t j = 0;
  for (; j + 4 <= row_count; j += 4) {
    const uint8_t* rw[4];
    const float* rs[4];
    for (int r = 0; r < 4; ++r) {
      rw[r] = base + (row_begin + j + r) * k;
      rs[r] = scales(row_begin + j + r);
    }
    // Rows of x in passes of kRowsAPass: the four weight rows (4 x k bytes) stay in L1/L2
    // for the second pass; only the first streams them in and prefetches the next four.
    for (int64_t i = 0; i < xs.m; i += kRowsAPass) {
      Pass<4>(rw, rs, x.data() + i * k, std::min<int64_t>(kRowsAPass, xs.m - i), k, bc,
              i == 0 ? 4 * k : 0, y + i * ldy + j, ldy);
    }
  }
  for (; j < row_count; ++j) {  // the last 1-3 rows of the share
    const uint8_t* rw[1] = {base + (row_begin + j) * k};
    const float* rs[1] = {scales(row_begin + j)};
    for (int64_t i = 0; i < xs.m; i += kRowsAPass) {
      Pass<1>(rw, rs, x.data() + i * k, std::min<int64_t>(kRowsAPass, xs.m - i), k, bc, 0,
              y + i * ldy + j, ldy);
    }
  }
#else
  (void)w, (void)row_begin, (void)y, (void)ldy;
#endif
}

}  // namespace dsv3::engine
