#ifndef DSV3_ENGINE_KERNELS_QUANTIZE_H_
#define DSV3_ENGINE_KERNELS_QUANTIZE_H_

// Load-time quantization of a projection to the in-memory group formats (dtype.h):
//   kQ8: per group of 32 columns of a row, scale = absmax / 127 (rounded to f16), codes
//        round(w / scale) in [-127, 127];
//   kQ4: per group, scale = m / -8 where m is the group's value of largest magnitude (so it
//        is coded exactly, as -8), codes round(w / scale) clamped to [-8, 7], stored + 8;
//   kQ6: the same with scale = m / -32, codes in [-32, 31] stored + 32 (for output heads:
//        llama.cpp's Q4 files keep theirs in 6 bits, Q6_K).
// The byte budget is that of ggml's Q8_0 / Q4_0 (8.5 / 4.5 bits a weight; kQ6: 6.5, about
// Q6_K's 6.56). The kernels take activations in f32 (matmul_direct.h) or quantized to int8
// (matmul_int8.h). Rows are split between the engine's threads.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kernels/linear.h"

namespace dsv3::engine {

inline constexpr int64_t kQuantGroup = 32;

// Whether `w` can be quantized: in_features a multiple of kQuantGroup and not yet quantized.
bool CanQuantize(const Linear& w);

// Memory for quantized codes: one block, 2 MiB-aligned and offered to the kernel for
// transparent huge pages (the kernels stream these bytes every token; 4 KiB pages cost a TLB
// miss and stop the hardware prefetchers every 4 KiB), handed out in cache-line-aligned
// pieces that keep the block alive.
class CodeArena {
 public:
  static CodeArena Create(int64_t bytes);        // an empty arena (Take fails) if out of memory
  std::shared_ptr<uint8_t> Take(int64_t bytes);  // null when it does not fit

 private:
  std::shared_ptr<uint8_t> base_;
  int64_t size_ = 0;
  int64_t used_ = 0;
};

// Bytes of codes QuantizeLinear takes for `w` in `target` (plus up to 63 of alignment).
int64_t QuantizedCodeBytes(const Linear& w, DType target);

// W in `target` (kQ8, kQ6 or kQ4), from any stored dtype; its codes in `arena` (or a block of their
// own), which the result keeps alive.
absl::StatusOr<Linear> QuantizeLinear(const Linear& w, DType target, CodeArena* arena = nullptr);

// FP8 e4m3 as DeepSeek-V3's checkpoints store it: v [rows, cols] as codes in `out`, one scale
// per block_rows x block_cols block (the block's largest |v| maps to 448; an all-zero block
// gets 1). Returns the scales, [ceil(rows / block_rows), ceil(cols / block_cols)].
std::vector<float> QuantizeE4M3Blocks(const float* v, int64_t rows, int64_t cols,
                                      int64_t block_rows, int64_t block_cols, uint8_t* out);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_QUANTIZE_H_
