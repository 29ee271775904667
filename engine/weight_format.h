#ifndef DSV3_ENGINE_WEIGHT_FORMAT_H_
#define DSV3_ENGINE_WEIGHT_FORMAT_H_

// The format a process keeps its projection weights in (`--weights`): as the checkpoint
// stores them, or quantized at load (kernels/quantize.h) from BF16 or FP8 checkpoints:
//   int8: every projection in kQ8 (8.5 bits a weight);
//   int4: every projection in kQ4 (4.5 bits a weight), the output heads in kQ6 (6.5 bits:
//         next-token logits are the most sensitive product; llama.cpp's Q4_0 files keep their
//         heads in Q6_K);
//   int8-head: the output heads in kQ8, everything else as stored (an FP8 checkpoint keeps
//         its FP8 experts and stops reading a BF16 head: half the bytes a token reads on a
//         small model with DeepSeek-V3's 129k vocabulary).
// The embedding tables (one row read per token) and the MoE routers (tiny; expert choice is
// discontinuous in their output) stay as stored, as does a projection whose inputs are not a
// multiple of 32. The format is part of the model's identity (ModelConfig::weight_format,
// hence the config hash): KV computed under one format never meets another's.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::engine {

struct ModelWeights;

enum class WeightFormat { kAsStored, kInt8, kInt4, kInt8Head };

// "auto" (as stored), "int8", "int4", "int8-head".
absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name);
absl::string_view WeightFormatName(WeightFormat format);

struct QuantizeReport {
  int64_t projections = 0;            // quantized
  int64_t source_bytes = 0;           // their bytes as stored
  int64_t quantized_bytes = 0;        // and now
  std::vector<const void*> released;  // stored tensors no longer read (by their data)
};

// Quantizes `w`'s projections in place for `format` (a no-op for kAsStored), one after the
// other, each on all the engine's threads; the stored bytes a projection no longer needs are
// released from the process as soon as it is done (weight_residency.h), so the peak is the
// quantized model plus one projection.
// int8_activations: the quantized projections take int8 activations (decode and prefill)
// (Linear::int8_activations, kernels/matmul_int8.h).
absl::StatusOr<QuantizeReport> QuantizeModelWeights(WeightFormat format, ModelWeights* w,
                                                    bool int8_activations = true);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_WEIGHT_FORMAT_H_
