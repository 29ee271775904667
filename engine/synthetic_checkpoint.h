#ifndef DSV3_ENGINE_SYNTHETIC_CHECKPOINT_H_
#define DSV3_ENGINE_SYNTHETIC_CHECKPOINT_H_

// Random checkpoints in the real Hugging Face layout (config.json, model.safetensors.index.json,
// sharded safetensors) for tests and benchmarks (`dsv3 make-model`). Values are a pure function
// of (seed, tensor name): projections N(0, 1/in_features), embeddings N(0, 1), norm weights
// 1 + 0.1 N(0, 1), gate biases 0.1 N(0, 1), so activations stay O(1). FP8 checkpoints quantise
// every attention/MLP/expert projection to e4m3 with one f32 scale per 128x128 block
// (scale = block max |w| / 448), as DeepSeek-V3 ships them.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model_config.h"
#include "engine/safetensors_writer.h"

namespace dsv3::engine {

struct SyntheticOptions {
  std::string preset = "tiny";  // "tiny" (the golden cases' shape), "demo" (tiny with
                                // DeepSeek-V3's 129280-token vocabulary) or "bench" (issue 3)
  bool fp8 = false;
  int64_t mtp_layers = 0;
  uint64_t seed = 0;
  int64_t max_shard_bytes = 0;  // 0: a preset default (several shards either way)
  // Skews routed-expert selection Zipf-like (a hot-expert workload for EPLB): each MoE
  // layer's experts are ranked by a shuffle seeded per layer, and expert of rank k (1-based)
  // gets router_skew * -ln(k) added to its e_score_correction_bias, which steers only the
  // choice of experts (noaux_tc), not their weights. 0: off, the checkpoint byte-identical
  // to one written without the option.
  double router_skew = 0;
};

absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset);

// Every tensor of `config`'s checkpoint, in file order (FP8 projections followed by their
// weight_scale_inv when config.quantized()).
std::vector<TensorSpec> CheckpointTensorSpecs(const ModelConfig& config);

// Writes the checkpoint into `dir` (created if missing).
absl::Status WriteSyntheticCheckpoint(const std::string& dir, const SyntheticOptions& options);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SYNTHETIC_CHECKPOINT_H_
