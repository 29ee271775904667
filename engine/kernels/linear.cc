#include "engine/kernels/linear.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/axpy_rows.h"
#include "engine/kernels/gemm.h"
#include "engine/kernels/matmul_bf16.h"
#include "engine/kernels/matmul_direct.h"
#include "engine/kernels/matmul_fp8.h"
#include "engine/kernels/matmul_int8.h"
#include "engine/kernels/ops.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {
namespace {

// Rows of W dequantised to f32 per GEMM tile: 128 x 1024 f32 is 512 KiB, half this CPU's L2.
constexpr int64_t kTileRows = 128;
// Up to this many activation rows the direct kernel (weights dequantised in registers, read
// once) beats dequantising a tile and calling the library GEMM.
constexpr int64_t kDirectMaxRows = 24;
// From 2 up to this many activation rows, BF16 weights on a CPU with AVX512_BF16 run
// matmul_bf16.h: [16384, 4096], 2 threads, 1.1-1.5x the direct kernel at 2-24 rows, 1.2-1.3x
// dequantised tiles + f32 GEMM at 32-64; at 128 and 512 rows the tiles are faster.
// (At 1 row the direct kernel streams the weights as fast.)
constexpr int64_t kBf16MaxRows = 64;
// kQ4 weights with quantized activations on a CPU with AVX512_BF16: above this many rows, tiles
// rounded to bf16 (matmul_bf16.h) beat the integer kernel. matmul_bench, 2 threads: 2-2.5x at
// 32-64 rows of an expert's [512, 1024], 1.3x at 32 of [4096, 1024], even at 24 of
// [16384, 4096]; below 8-16 rows the integer kernel is faster.
constexpr int64_t kQ4Int8MaxRows = 24;
// The same for kQ8, whose integer kernel needs no unpacking: matmul_bench, 2 threads, two runs
// each way, on an earlier host (its CPU family was not recorded; not a Zen 4, by the integer
// kernel's speed): tiles took 0.64-0.72x the time at 128 and 512 rows of [3072, 1024],
// 0.49-0.95x of [1024, 2048], 0.64-0.86x at 48-64 rows, but 0.91-1.03x at 32 (engine_bench
// --weights int8: prefill 1.32-1.33x the tokens/s). Decode batches up to 32 keep the integer
// kernel there. (Measured while the integer kernel still called DTypeSize in its loop, which
// halved its time on Zen 4: the crossover may now lie further out.)
constexpr int64_t kQ8Int8MaxRows = 32;
// On Zen 4 (AMD family 19h; its only parts with AVX-512) tiles win from fewer rows. matmul_bench,
// 2 threads, alternating, twice, us, integer / tiles: [129280, 1024] at 16 rows 16.9-17.2k /
// 18.0-18.5k, at 24 25.4-26.0k / 23.5-24.4k, at 32 34.0-34.5k / 29.1-29.3k; [5632, 1024] at 16
// 778-781 / 671-690, at 32 1550-1622 / 1245-1287; [1024, 2816] and [1024, 512] likewise
// (bench/RESULTS.md, session 23).
constexpr int64_t kQ8Int8MaxRowsZen4 = 16;

// FP8 weights with bf16 activations on a CPU with AVX512_BF16: above this many rows, tiles of
// the weights dequantised and rounded to bf16 (matmul_bf16.h) instead of the direct kernel or
// f32 tiles and the library GEMM. matmul_bench, 2 threads, an expert's [7168, 2048] and
// [2048, 7168], us, direct / tiles: at 12 rows 2.4-3.0k / 2.2-2.7k, 16 3.6-3.8k / 2.3-2.7k,
// 24 5.4-5.8k / 2.3-3.6k; f32 tiles + GEMM / bf16 tiles at 32 5.7-6.8k / 3.1-3.2k, 64
// 8.4-9.3k / 5.3-6.0k, 512 47-49k / 39-44k; at 8 rows level (bench/RESULTS.md, session 30).
constexpr int64_t kFp8DirectMaxRows = 8;

// Where the CPU also has AVX512_VBMI (Fp8KernelApplies), 1 row up to this many take the FP8
// kernel (codes decoded to bf16 for vdpbf16ps, matmul_fp8.h), and the tiles only more: every
// decode batch up to it computes a row alike. matmul_bench, 2 threads, 8 copies, us, direct /
// FP8 kernel, [2048, 7168] and [7168, 2048]: 1 row 437-467 / 420-426 and 349-452 / 274-480
// (level), 2 rows 562 / 373 and 588 / 513, 4 830 / 425 and 941 / 424, 8 1,753 /
// 778 and 1,186 / 925; tiles / FP8 kernel: 9 1,960 / 970 and 1,999 / 1,145, 16 2,968 / 1,435
// and 2,831 / 1,501, 24 3,004 / 2,168 and 2,323 / 2,431, 32 3,794 / 2,725 and 2,851 / 3,095
// (bench/RESULTS.md, session 31).
constexpr int64_t kFp8KernelMaxRows = 16;

// Whether m activation rows on w take MatMulRowsFp8.
bool Fp8KernelTakes(int64_t m, const Linear& w) {
  return m <= kFp8KernelMaxRows && w.bf16_activations && !w.batch_invariant && Fp8KernelApplies(w);
}

bool CpuIsZen4() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool zen4 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("amdfam19h") != 0;
  }();
  return zen4;
#else
  return false;
#endif
}

// Below this many weight elements a projection runs on the calling thread alone.
constexpr int64_t kParallelMinElements = 1 << 15;

std::vector<float>& TileBuffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}

// One thread's share of MatMulRows for many activation rows: W tiles dequantised to f32, then
// the library GEMM (y tile = x tile^T).
void MatMulRowsTiled(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                     int64_t row_count, float* y, int64_t ldy) {
  const int64_t in = w.in_features;
  std::vector<float>& tile = TileBuffer();
  tile.resize(static_cast<size_t>(kTileRows * in));
  for (int64_t r0 = 0; r0 < row_count; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, row_count - r0);
    for (int64_t r = 0; r < rows; ++r) DequantRowFast(w, row_begin + r0 + r, &tile[r * in]);
    Gemm(x, ldx, tile.data(), in, BLayout::kNK, y + r0, ldy, m, rows, in, GemmOutput::kOverwrite);
  }
}

void MatMulRowsOneThread(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                         int64_t row_count, float* y, int64_t ldy) {
  // The direct kernel computes a row as at any other row count (matmul_direct.cc); the tiled
  // GEMM does not, so batch-invariant projections keep the direct kernel.
  if (m <= kDirectMaxRows || RowsAlike(w)) {
    MatMulRowsDirect(x, m, ldx, w, row_begin, row_count, y, ldy);
  } else {
    MatMulRowsTiled(x, m, ldx, w, row_begin, row_count, y, ldy);
  }
}

// x quantized for w when the int8 kernel takes this call, else null. kQ8/kQ4/kQ6 weights with
// int8 activations take it at any number of rows where the bf16 tiles do not apply (CPUs
// without AVX512_BF16; kQ6): measured 2x faster than dequantised tiles + f32 GEMM at 32 rows,
// 1.4x at 64, and, with the activations met in blocks of 64 rows that stay in L2, 1.1-1.25x at
// 128 and 512 rows of [3072, 1024] and [1024, 2048] (matmul_bench, 2 threads). The buffer is
// the calling thread's; the threads of one MatMulRows call share it.
const Int8Activations* QuantizedFor(const float* x, int64_t m, int64_t ldx, const Linear& w) {
  if (!Int8KernelApplies(w)) return nullptr;
  if (Bf16TilesTake(m, w)) return nullptr;
  thread_local Int8Activations xq;
  QuantizeActivations(x, m, ldx, w.in_features, w.dtype, &xq);
  return &xq;
}

// x as the AVX512_BF16 kernels take it for this call, else null: split in two bf16 parts for
// BF16 weights at 2 to kBf16MaxRows rows; rounded to bf16 for BF16 weights that take bf16
// activations at 2 rows or more, for kQ4/kQ8 weights with quantized activations above
// kQ4Int8MaxRows/kQ8Int8MaxRows, and for FP8 weights with bf16 activations (the FP8 kernel up
// to kFp8KernelMaxRows rows, then the tiles; at every row count where the CPU has both). As
// QuantizedFor: the calling thread's buffer.
//
// Where its rows must be computed alike (RowsAlike), BF16 takes the bf16 kernel at every row
// count (1, and past 64 split): its rows are summed the same whatever rows share the call.
const Bf16Activations* Bf16For(const float* x, int64_t m, int64_t ldx, const Linear& w) {
  const bool bf16 = (m >= 2 || RowsAlike(w)) && Bf16KernelApplies(w);
  const bool split = bf16 && (m <= kBf16MaxRows || w.batch_invariant) && !w.bf16_activations;
  const bool rounded = (bf16 && w.bf16_activations) || Bf16TilesTake(m, w) || Fp8KernelTakes(m, w);
  if (!split && !rounded) return nullptr;
  thread_local Bf16Activations xs;
  SplitActivations(x, m, ldx, w.in_features, split, &xs);
  return &xs;
}

void MatMulRowsShare(const float* x, const Int8Activations* xq, const Bf16Activations* xs,
                     int64_t m, int64_t ldx, const Linear& w, int64_t row_begin, int64_t row_count,
                     float* y, int64_t ldy) {
  if (xq != nullptr) {
    MatMulRowsInt8(*xq, w, row_begin, row_count, y, ldy);
  } else if (xs != nullptr && w.dtype == DType::kBF16) {
    MatMulRowsBf16(*xs, w, row_begin, row_count, y, ldy);
  } else if (xs != nullptr && Fp8KernelTakes(m, w)) {
    MatMulRowsFp8(*xs, w, row_begin, row_count, y, ldy);
  } else if (xs != nullptr) {
    MatMulRowsBf16Tiles(*xs, w, row_begin, row_count, y, ldy);
  } else {
    MatMulRowsOneThread(x, m, ldx, w, row_begin, row_count, y, ldy);
  }
}

}  // namespace

// BF16 weights that round their activations: rounding turns a difference in the last bit of
// an input into one of 2^-8 wherever an element lies near a rounding boundary, so a second
// summation order at 1 row (the batch-1 kernel's) made a prompt's logits decoded alone and
// beside another sequence differ by as much as rounding moves them (0.012-0.019 against
// 0.015-0.020 on tiny-v3-bf16), and tokens follow. One kernel costs them nothing measurable:
// the bf16 kernel streams a row as fast as the batch-1 kernel (RESULTS.md, session 27).
bool RowsAlike(const Linear& w) {
  return w.batch_invariant || (w.bf16_activations && Bf16KernelApplies(w));
}

bool Bf16TilesTake(int64_t m, const Linear& w) {
  if (w.batch_invariant) return false;  // another rounding than the integer kernel's
  const int64_t q8_max = CpuIsZen4() ? kQ8Int8MaxRowsZen4 : kQ8Int8MaxRows;
  const int64_t max = w.dtype == DType::kQ8 ? q8_max
                      : w.dtype == DType::kF8E4M3
                          ? (Fp8KernelApplies(w) ? kFp8KernelMaxRows : kFp8DirectMaxRows)
                          : kQ4Int8MaxRows;
  return m > max && Bf16TilesApply(w);
}

void Linear::DequantRow(int64_t row, int64_t col_begin, int64_t n, float* out) const {
  const int64_t first = row * in_features + col_begin;
  if (dtype == DType::kQ8 || dtype == DType::kQ4 || dtype == DType::kQ6) {
    const uint16_t* scales = group_scales.data() + row * (in_features / group);
    const auto* codes = static_cast<const uint8_t*>(data) + row * RowBytes(dtype, in_features);
    int64_t scale_group = -1;
    float s = 0.0f;
    for (int64_t c = 0; c < n; ++c) {
      const int64_t col = col_begin + c;
      if (col / group != scale_group) {  // one f16 conversion per group, not per weight
        scale_group = col / group;
        s = F16ToFloat(scales[scale_group]);
      }
      int code;
      if (dtype == DType::kQ8) {
        code = static_cast<int8_t>(codes[col]);
      } else {  // kQ4, kQ6: chunks of 64 columns (32 at the end), linear.h
        const int64_t c0 = col / 64 * 64, j = col - c0;
        const int64_t width = std::min<int64_t>(64, in_features - c0);
        const uint8_t* chunk = codes + (dtype == DType::kQ4 ? c0 / 2 : c0 / 4 * 3);
        const uint8_t byte = chunk[j % (width / 2)];
        const int low = j < width / 2 ? byte & 0xF : byte >> 4;
        if (dtype == DType::kQ4) {
          code = low - 8;
        } else {
          const int top = (chunk[width / 2 + j % (width / 4)] >> (2 * (j / (width / 4)))) & 3;
          code = (low | top << 4) - 32;
        }
      }
      out[c] = static_cast<float>(code) * s;
    }
    return;
  }
  if (dtype != DType::kF8E4M3) {
    ConvertToFloat(dtype, data, first, n, out);
    return;
  }
  const auto* codes = static_cast<const uint8_t*>(data) + first;
  const int64_t scale_cols = (in_features + block_cols - 1) / block_cols;
  const float* scales = scale_inv.data() + (row / block_rows) * scale_cols;
  int64_t c = 0;
  while (c < n) {
    const int64_t col = col_begin + c;
    const int64_t block = col / block_cols;
    const int64_t block_end = std::min(n, (block + 1) * block_cols - col_begin);
    const float s = scales[block];
    for (; c < block_end; ++c) out[c] = kE4M3ToFloat[codes[c]] * s;
  }
}

void MatMulRows(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                int64_t row_count, float* y, int64_t ldy) {
  if (m <= 0 || row_count <= 0) return;
  const Int8Activations* xq = QuantizedFor(x, m, ldx, w);
  const Bf16Activations* xs = xq == nullptr ? Bf16For(x, m, ldx, w) : nullptr;
  if (row_count * w.in_features < kParallelMinElements || ThreadPool::InJob()) {
    MatMulRowsShare(x, xq, xs, m, ldx, w, row_begin, row_count, y, ldy);
    return;
  }
  // Static split of the output rows: every thread streams an equal share of W once.
  const int64_t align = m <= kDirectMaxRows || RowsAlike(w) || xq != nullptr ||
                                (xs != nullptr && w.dtype == DType::kBF16)
                            ? 16
                            : kTileRows;
  ThreadPool::Default().ParallelFor(
      row_count,
      [&](int64_t begin, int64_t end) {
        MatMulRowsShare(x, xq, xs, m, ldx, w, row_begin + begin, end - begin, y + begin, ldy);
      },
      align);
}

void MatMulTransposedRows(const float* x, int64_t m, int64_t ldx, const Linear& w,
                          int64_t row_begin, int64_t row_count, float* y, int64_t ldy) {
  const int64_t in = w.in_features;
  std::vector<float>& tile = TileBuffer();
  tile.resize(static_cast<size_t>(kTileRows * in));
  for (int64_t i = 0; i < m; ++i) std::memset(y + i * ldy, 0, sizeof(float) * in);
  for (int64_t r0 = 0; r0 < row_count; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, row_count - r0);
    for (int64_t r = 0; r < rows; ++r) DequantRowFast(w, row_begin + r0 + r, &tile[r * in]);
    if (m >= 4 && !RowsAlike(w)) {  // the GEMM may sum in another order than the loop
      Gemm(x + r0, ldx, tile.data(), in, BLayout::kKN, y, ldy, m, in, rows,
           GemmOutput::kAccumulate);
      continue;
    }
    AxpyRows(x + r0, m, ldx, tile.data(), rows, in, in, y, ldy);
  }
}

}  // namespace dsv3::engine
