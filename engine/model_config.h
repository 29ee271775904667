#ifndef DSV3_ENGINE_MODEL_CONFIG_H_
#define DSV3_ENGINE_MODEL_CONFIG_H_

// The subset of a Hugging Face `config.json` that changes the math of a DeepSeek-V3-architecture
// model (model_type deepseek_v3, kimi_k2, deepseek_v2). Parsing is strict: a field the engine
// cannot honour is an error naming the field, never a silent default.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::engine {

enum class TopkMethod { kNoauxTc, kGreedy, kGroupLimitedGreedy };
enum class ScoringFunc { kSigmoid, kSoftmax };

struct YarnConfig {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type = "deepseek_v3";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t q_lora_rank = 0;  // 0: no q LoRA (config null), a plain q_proj.
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t n_routed_experts = 0;  // 0: no MoE at all (every layer dense).
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::kNoauxTc;
  ScoringFunc scoring_func = ScoringFunc::kSigmoid;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<YarnConfig> rope_yarn;  // rope_scaling of type yarn; null means none.
  int64_t max_position_embeddings = 0;
  int64_t num_nextn_predict_layers = 0;
  bool tie_word_embeddings = false;
  // FP8 block quantisation (quantization_config); 0 when the checkpoint is not quantised.
  int64_t weight_block_rows = 0;
  int64_t weight_block_cols = 0;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  // Not from config.json: the format the process holds the weights in when it is not the
  // stored one ("int8", "int4": LoadOptions::weights, set by Model::Load). Part of the hash.
  std::string weight_format;
  // Not from config.json either: LoadOptions::bf16_activations, set by Model::Load. Part of the
  // hash: KV and experts computed with rounded activations are not the split ones'.
  bool bf16_activations = false;
  // LoadOptions::batch_invariant, set by Model::Load. Part of the hash: with it, int8 and int4
  // projections of many rows compute as those of few do (not as bf16 tiles).
  bool batch_invariant = false;
  // Set by Model::Load: every projection the process holds computes a row the same at any row
  // count (kernels/linear.h RowsAlike). Then prefill attends as decode does (MlaAttention), so
  // a prompt's rows equal those of its tokens decoded one a step. Not in the hash: it follows
  // from the fields above and the CPU.
  bool rows_alike = false;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool IsMoeLayer(int64_t layer) const;
  // Softmax scale of MLA: qk_head_dim^-0.5, times mscale^2 under YaRN.
  double SoftmaxScale() const;
  bool quantized() const { return weight_block_rows > 0; }
};

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);
// Reads `<dir>/config.json`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);
// A Hugging Face config.json for `config` (round-trips through ParseModelConfig).
std::string ModelConfigToJson(const ModelConfig& config);
// Stable 64-bit hash (FNV-1a over a canonical text of every math-relevant field), as 16 hex
// digits. Prefill and decode workers compare it before moving KV between them.
std::string ModelConfigHash(const ModelConfig& config);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MODEL_CONFIG_H_
