#ifndef DSV3_ENGINE_KERNELS_MATMUL_BF16_H_
#define DSV3_ENGINE_KERNELS_MATMUL_BF16_H_

// x W^T for BF16 weights on CPUs with AVX512_BF16 (vdpbf16ps: 32 bf16 products summed into 16
// f32 lanes per instruction). The weights are used as stored, never widened to f32; the f32
// activations are split once per call into two bf16 parts, x = hi + lo (hi = x rounded to
// bf16, lo = the remainder rounded to bf16), and each weight meets both: the products are
// exact and the sums f32, so the result is the f32 product's to within x's 16-bit split
// (|x - hi - lo| <= 2^-17 |x|), not bf16 activations' 2^-9. Two vdpbf16ps per 32 columns and
// activation row still do as many multiply-adds per instruction as f32 FMAs, without the five
// operations a weight vector costs to widen, and without writing dequantised tiles.
//
// kQ4 and kQ8 weights with quantized activations (Linear::int8_activations), and FP8 weights
// with bf16 activations, use the same kernel for many rows (prefill, big batches): 128-row
// tiles of W dequantised and rounded to bf16, and x rounded to bf16 once (no lo part): one
// vdpbf16ps per 32 columns and row, twice the f32 GEMM's multiply-adds per instruction and
// twice the int8 kernel's (whose per-group scales cost 4 operations per 64 products), with
// rounding errors below the codes' own.

#include <cstdint>
#include <vector>

#include "engine/kernels/linear.h"

namespace dsv3::engine {

// x [m, k] split into bf16 parts (or only rounded: `lo` unused), rows padded with zeros to
// `stride` (k rounded up to 32).
struct Bf16Activations {
  int64_t m = 0;
  int64_t k = 0;
  int64_t stride = 0;
  bool split = true;         // x = hi + lo; false: x ~ hi alone
  std::vector<uint16_t> hi;  // [m, stride]
  std::vector<uint16_t> lo;  // [m, stride], when split
};

// True when this CPU runs MatMulRowsBf16 (AVX-512 with AVX512_BF16) and `w` is BF16.
bool Bf16KernelApplies(const Linear& w);

// True when this CPU runs MatMulRowsBf16Tiles and `w` takes it: kQ4 and kQ8 weights that take
// quantized activations (Linear::int8_activations), FP8 weights that take bf16 activations
// (Linear::bf16_activations: a code times its block's f32 scale, rounded to bf16 as the
// reference's weight_dequant does). kQ4 and kQ8 values, a code times an f16 scale,
// lose at most 2^-9 of themselves to bf16, next to the code's own error of up to half a step
// (1/16 of the group's range for kQ4, 1/254 of its largest magnitude for kQ8); x rounded to
// bf16 (2^-9 of itself) is finer than its int8 codes (1/254 of its group's largest
// magnitude). Linear.cc says from how many rows each takes it.
bool Bf16TilesApply(const Linear& w);

// Splits x [m, k] (row stride ldx) into `out` (split = false: only rounds it to bf16). Needs
// AVX512_BF16 (Bf16KernelApplies / Bf16TilesApply).
void SplitActivations(const float* x, int64_t m, int64_t ldx, int64_t k, bool split,
                      Bf16Activations* out);

// y[i, j] = sum_c x[i, c] * W[row_begin + j, c] for i < xs.m, j < row_count, with x as `xs`
// holds it. Single-threaded; callers split the rows between threads.
void MatMulRowsBf16(const Bf16Activations& xs, const Linear& w, int64_t row_begin,
                    int64_t row_count, float* y, int64_t ldy);

// The same for weights of any dtype (Bf16TilesApply): tiles of W rows dequantised and rounded
// to bf16, each multiplied by all of x before the next (prefill: many rows of x).
void MatMulRowsBf16Tiles(const Bf16Activations& xs, const Linear& w, int64_t row_begin,
                         int64_t row_count, float* y, int64_t ldy);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_MATMUL_BF16_H_
