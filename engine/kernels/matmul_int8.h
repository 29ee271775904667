#ifndef DSV3_ENGINE_KERNELS_MATMUL_INT8_H_
#define DSV3_ENGINE_KERNELS_MATMUL_INT8_H_

// x W^T with kQ8/kQ4/kQ6 weights and int8 activations (decode batches and prefill): x is quantized
// per group of 32 columns (scale absmax / 127, the weights' grouping), and each group's product is
// an exact integer dot product (AVX-512 VNNI vpdpbusd) times the two scales. At batch 1 the
// f32 kernel (matmul_direct.h) spends 5 operations turning 16 codes into f32 before it can
// use them; here 64 weights cost one load, one xor or nibble unpack, and per activation row
// one vpdpbusd, one conversion and two multiplies: the weights stream at memory speed.
//
// vpdpbusd multiplies unsigned by signed bytes. The weights become the unsigned side (kQ8
// codes + 128, kQ4's stored nibbles, which are code + 8, kQ6's code + 32), so each lane's sum
// carries offset x sum(x codes of its 4 columns), which depends on x alone: it is subtracted by
// starting each lane's sum at its negation, computed once per activation row.
//
// The error this adds is the activations' rounding (at most half a step, absmax / 254, per
// column of a group), as in llama.cpp's Q8_0 activations; Linear::int8_activations chooses it
// per projection (weight_format.h).

#include <cstdint>
#include <vector>

#include "engine/kernels/linear.h"

namespace dsv3::engine {

// x [m, k] quantized for weights with codes offset by `offset` (128 kQ8, 8 kQ4, 32 kQ6),
// chunk-major so a kernel block reads its activation rows through one pointer: for each
// 64-column chunk, for each row, a Chunk.
struct Int8Activations {
  struct Chunk {
    int8_t codes[64];         // round(x / scale of its group); 0 past the row's end
    int32_t lane_offset[16];  // -offset x sum of the 4 codes of each vpdpbusd lane
    float lane_scale[16];     // the scale of each lane's group
  };
  int64_t m = 0;
  int64_t k = 0;
  std::vector<Chunk> chunks;  // [ceil(k / 64), m]
};

// True when this CPU runs MatMulRowsInt8 (AVX-512 with VNNI) and `w` can use it: kQ8/kQ4/kQ6
// weights that ask for int8 activations.
bool Int8KernelApplies(const Linear& w);

// Quantizes x (k a multiple of 32) for weights of `dtype` (kQ8, kQ4 or kQ6) into `out`.
void QuantizeActivations(const float* x, int64_t m, int64_t ldx, int64_t k, DType dtype,
                         Int8Activations* out);

// y[i, j] = sum_c x[i, c] * W[row_begin + j, c] for i < xq.m, j < row_count, with x as `xq`
// holds it (quantized for w.dtype). Single-threaded; callers split the rows between threads.
void MatMulRowsInt8(const Int8Activations& xq, const Linear& w, int64_t row_begin,
                    int64_t row_count, float* y, int64_t ldy);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_MATMUL_INT8_H_
