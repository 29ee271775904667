#ifndef DSV3_ENGINE_KERNELS_MATMUL_FP8_H_
#define DSV3_ENGINE_KERNELS_MATMUL_FP8_H_

// FP8 (e4m3, block-scaled) weights against a few activation rows rounded to bf16: decode
// batches of 1 to 16 sequences (linear.cc), on CPUs with AVX512_BF16 and AVX512_VBMI. Each
// code is decoded exactly to bf16 by two 128-entry byte tables (vpermt2b: the value's high and low
// bytes, the sign put back with one logic op), and each 32 columns and activation row cost one
// vdpbf16ps. The direct kernel (matmul_direct.h) spends three instructions widening every 16
// codes to f32 and one FMA per 16 columns and row: at 2-8 rows it is bound by them, not by
// memory, and this kernel takes 0.44-0.87 of its time; at 9-16 rows 0.48-0.57 of the bf16
// tiles' (an expert's projections, bench/RESULTS.md, session 31). At 1 row both stream the
// weights from memory about as fast. Activation rows are met 4 at a time (their sums in
// registers), each pass over the same 4 weight rows, in L1.
//
// Numerics: the products are exact (bf16 times bf16 in f32), each 128-column block's sums are
// scaled by the block's scale as the direct kernel does, and x is rounded to bf16 (2^-9 of
// itself), as the bf16 tiles round it past 16 rows (Linear::bf16_activations). A row's result
// is the same whatever rows share the call, one of them alone too.

#include <cstdint>

#include "engine/kernels/linear.h"

namespace dsv3::engine {

struct Bf16Activations;

// True when this CPU runs MatMulRowsFp8 and `w` can take it: FP8 weights whose in_features and
// block_cols are multiples of 64 (DeepSeek's 128 x 128 blocks).
bool Fp8KernelApplies(const Linear& w);

// y[i, j] = sum_c x[i, c] * W[row_begin + j, c] for i < xs.m, j < row_count, with x rounded to
// bf16 in `xs` (not split). Single-threaded; callers split the rows between threads.
void MatMulRowsFp8(const Bf16Activations& xs, const Linear& w, int64_t row_begin, int64_t row_count,
                   float* y, int64_t ldy);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_MATMUL_FP8_H_
