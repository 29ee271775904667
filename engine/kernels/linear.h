#ifndef DSV3_ENGINE_KERNELS_LINEAR_H_
#define DSV3_ENGINE_KERNELS_LINEAR_H_

// A projection weight W [out_features, in_features] (PyTorch nn.Linear layout: y = x W^T) kept
// in its stored dtype (F32, BF16, F16, or FP8 e4m3 with block scales W = code x
// scale_inv[r / block_rows][c / block_cols], edge blocks partial), or quantized at load
// (kQ8/kQ4/kQ6, kernels/quantize.h: W = code x group_scales[r][c / group]). Activations are
// always f32; W is never materialised in f32 as a whole:
//   - up to 24 activation rows (decode): W is streamed once and dequantised in registers
//     (matmul_direct.h, AVX-512 with a portable fallback); kQ8/kQ4/kQ6 with int8_activations,
//     at any number of rows: multiplied by int8-quantized activations (matmul_int8.h); BF16
//     from 2 to 64 rows on CPUs with AVX512_BF16: bf16 dot products with x split into two bf16
//     parts (matmul_bf16.h), or rounded to bf16 at any number of rows with bf16_activations; kQ4
//     and kQ8 with int8_activations above 24 and 32 rows, FP8 with bf16_activations above 16
//     (above 8 on CPUs without AVX512_VBMI): W tiles and x rounded to bf16, the same kernel
//     (matmul_bf16.h); FP8 with bf16_activations from 1 to 16 rows on CPUs with AVX512_BF16
//     and AVX512_VBMI: codes decoded to bf16, x rounded (matmul_fp8.h);
//   - more rows (prefill, big batches), where none of those applies: 128-row tiles of W are
//     dequantised to f32 and multiplied by the library GEMM (gemm.h, oneDNN).
// MatMulRows splits the output rows between the engine's threads (thread_pool.h) unless it is
// called from inside a parallel job, where it runs on the calling thread.

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/dtype.h"

namespace dsv3::engine {

struct Linear {
  // Bytes of one row of `in` columns in `dtype` (kQ4, kQ6: `in` a multiple of 32).
  static int64_t RowBytes(DType dtype, int64_t in) {
    if (dtype == DType::kQ4) return in / 2;
    if (dtype == DType::kQ6) return in / 4 * 3;
    return in * DTypeSize(dtype);
  }

  DType dtype = DType::kF32;
  int64_t out_features = 0;
  int64_t in_features = 0;
  const void* data = nullptr;  // row-major, any alignment (usually inside a file mapping)
  // FP8 only: [ceil(out / block_rows), ceil(in / block_cols)], copied out of the file.
  std::vector<float> scale_inv;
  int64_t block_rows = 0;
  int64_t block_cols = 0;
  // kQ8/kQ4/kQ6 only: f16 scales [out_features, in_features / group], and the buffer `data`
  // points into (copies of this Linear share it). kQ8 codes are int8 [out, in]. kQ4 and kQ6
  // codes are offset (code + 8, 0..15; code + 32, 0..63) and packed per chunk of W = 64
  // columns (32 at a row's end): first W / 2 bytes of their low 4 bits, byte j holding column
  // j in its low nibble and j + W / 2 in its high one (kQ4: all there is, [out, in / 2] bytes);
  // kQ6 then has W / 4 bytes of their top 2 bits, byte j holding those of columns j, j + W / 4,
  // j + W / 2, j + 3W / 4 in bits 0-1, 2-3, 4-5, 6-7 ([out, in * 3 / 4] bytes). The int8
  // kernel builds a chunk's 64 codes from broadcast loads and a shift or two.
  std::vector<uint16_t> group_scales;
  int64_t group = 0;
  std::shared_ptr<const void> owner;
  // kQ8/kQ4/kQ6: decode-sized batches quantize the activations to int8 and use integer dot
  // products (matmul_int8.h) where the CPU has AVX-512 VNNI; false keeps them in f32.
  bool int8_activations = false;
  // BF16: x is rounded to bf16 and each 32 columns cost one vdpbf16ps (matmul_bf16.h), as BF16
  // inference in PyTorch and llama.cpp compute, at every row count, so that a row's result does
  // not depend on its batch (as batch_invariant); false splits x into two bf16 parts from 2 rows
  // on (f32-level products, twice the instructions) and keeps f32 at 1 row. FP8: x rounded to bf16,
  // times the exact codes up to 16 rows (matmul_fp8.h), times W dequantised and rounded to bf16
  // in tiles above (as DeepSeek's reference computes FP8 checkpoints by default: weights
  // dequantised to bf16, a bf16 linear), so a decode step's rows depend on the batch's size
  // past 16 rows; on CPUs without AVX512_VBMI, the direct kernel's f32 products up to 8 rows.
  bool bf16_activations = false;
  // A row's result does not depend, to the bit, on how many rows share the call: one kernel at
  // every row count. kQ4/kQ8/kQ6 the integer kernel (no bf16 tiles), BF16 the bf16 kernel where
  // the CPU has AVX512_BF16 (at 1 row too, and past 64), the rest the direct kernel (no tiled
  // GEMM). Slower where the kernels it gives up win: big batches and prefill (RESULTS.md,
  // session 26).
  bool batch_invariant = false;

  bool empty() const { return data == nullptr; }
  // Bytes a pass over W reads (codes, plus group scales for kQ8/kQ4/kQ6).
  int64_t weight_bytes() const {
    return out_features * RowBytes(dtype, in_features) + scale_bytes();
  }
  int64_t scale_bytes() const {
    return static_cast<int64_t>(group_scales.size() * sizeof(uint16_t));
  }
  // W[row, col_begin : col_begin + n] as f32.
  void DequantRow(int64_t row, int64_t col_begin, int64_t n, float* out) const;
};

// y[i, j] = sum_c x[i, c] * W[row_begin + j, c] for i < m, j < row_count.
// x has leading dimension ldx (>= in_features), y has ldy (>= row_count).
void MatMulRows(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                int64_t row_count, float* y, int64_t ldy);

// Whether MatMulRows computes every row on w the same, to the bit, whatever rows share the
// call: w.batch_invariant, and BF16 weights with bf16_activations where the bf16 kernel runs.
bool RowsAlike(const Linear& w);

// Whether MatMulRows computes m activation rows on w (kQ4/kQ8 with int8 activations, FP8 with
// bf16 activations) with tiles rounded to bf16 (matmul_bf16.h) rather than the int8 or direct
// kernel: on CPUs with AVX512_BF16, above 24 rows for kQ4, 32 for kQ8 (16 on Zen 4) and 8 for
// FP8, where the tiles were measured faster; never for w.batch_invariant.
bool Bf16TilesTake(int64_t m, const Linear& w);

// y[m, out_features] = x[m, in_features] W^T (dense leading dimensions).
inline void MatMul(const float* x, int64_t m, const Linear& w, float* y) {
  MatMulRows(x, m, w.in_features, w, 0, w.out_features, y, w.out_features);
}

// y[i, c] = sum_j x[i, j] * W[row_begin + j, c] for c < in_features: x times a row block of
// W, untransposed (the absorbed MLA form uses it to fold W_UK into the query).
void MatMulTransposedRows(const float* x, int64_t m, int64_t ldx, const Linear& w,
                          int64_t row_begin, int64_t row_count, float* y, int64_t ldy);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_LINEAR_H_
