#ifndef DSV3_ENGINE_KERNELS_MATMUL_DIRECT_H_
#define DSV3_ENGINE_KERNELS_MATMUL_DIRECT_H_

// x W^T for few activation rows (decode): each weight element is read from memory once and
// dequantised in registers (BF16/F16 widening, FP8 e4m3 decoded and times its 128x128 block
// scale), never written back as f32. Single-threaded; callers split the rows between threads.
// AVX-512 when the CPU has it (checked once at run time), else dequantise-a-row + dot products
// (AVX2 or baseline through the multiversioned ops).

#include <cstdint>

#include "engine/kernels/linear.h"

namespace dsv3::engine {

// y[i, j] = sum_c x[i, c] * W[row_begin + j, c] for i < m, j < row_count.
void MatMulRowsDirect(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                      int64_t row_count, float* y, int64_t ldy);

// W[row, :] as f32 into out[in_features] (what tiles for the library GEMM are made of).
void DequantRowFast(const Linear& w, int64_t row, float* out);

// W[row, :] of a kQ8/kQ4/kQ6 projection as bf16 into out[in_features]: DequantRowFast rounded
// to nearest even, in one pass. False (nothing written) where this CPU lacks AVX512_BF16 or
// the format is another.
bool DequantRowBf16(const Linear& w, int64_t row, uint16_t* out);

// True when MatMulRowsDirect runs the AVX-512 kernel on this CPU.
bool DirectKernelUsesAvx512();

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_MATMUL_DIRECT_H_
