#ifndef DSV3_ENGINE_MODEL_WEIGHTS_H_
#define DSV3_ENGINE_MODEL_WEIGHTS_H_

// The weights of a DeepSeek-V3-architecture model, bound to a Checkpoint by their Hugging Face
// names and checked against the config. Projections stay in the checkpoint mapping in their
// stored dtype (Linear); norm vectors, gate biases and FP8 scales are copied out as f32. At
// load the projections are copied into huge pages or quantized (LoadOptions).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kernels/linear.h"
#include "engine/load_progress.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/weight_format.h"

namespace dsv3::engine {

struct MlaWeights {
  Linear q_a;  // [q_lora_rank, hidden]               (q LoRA)
  std::vector<float> q_a_norm;
  Linear q_b;                    // [heads * qk_head_dim, q_lora_rank]  (q LoRA)
  Linear q_proj;                 // [heads * qk_head_dim, hidden]       (q_lora_rank null)
  Linear kv_a;                   // [kv_lora_rank + qk_rope_head_dim, hidden]: [latent | k_pe]
  std::vector<float> kv_a_norm;  // [kv_lora_rank]
  Linear kv_b;  // [heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank], per head [k_nope | v]
  Linear o;     // [hidden, heads * v_head_dim]
};

struct MlpWeights {  // SwiGLU: down(silu(gate(x)) * up(x))
  Linear gate;
  Linear up;
  Linear down;
};

struct MoeWeights {
  Linear router;                  // mlp.gate.weight [n_routed_experts, hidden]
  std::vector<float> score_bias;  // e_score_correction_bias (noaux_tc), else empty
  std::vector<MlpWeights> experts;
  MlpWeights shared;  // n_shared_experts x moe_intermediate_size wide; empty when none
};

struct LayerWeights {
  std::vector<float> attn_norm;
  MlaWeights attn;
  std::vector<float> ffn_norm;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct MtpWeights {
  Linear embed;  // model.layers.N.embed_tokens (a copy of the main embedding)
  std::vector<float> enorm;
  std::vector<float> hnorm;
  Linear eh_proj;  // [hidden, 2 * hidden]: columns [embedding half | hidden half]
  LayerWeights block;
  std::vector<float> head_norm;  // shared_head.norm
  Linear head;                   // shared_head.head [vocab, hidden]
};

// What a process loads (LoadOptions::role).
enum class LoadRole {
  kEverything,
  // Attention workers: embeddings, attention, dense MLPs, shared experts, gates, norms, head,
  // MTP; no routed experts (a RoutedExpertExecutor runs them elsewhere).
  kAttentionSide,
  // Expert workers: only the routed experts LoadOptions selects.
  kRoutedExperts,
};

struct ExpertKey {
  int64_t layer = 0;  // main layers from 0, MTP layers after them (as RoutedExpertExecutor)
  int64_t expert = 0;
  bool operator<(const ExpertKey& o) const {
    return layer != o.layer ? layer < o.layer : expert < o.expert;
  }
};

struct ModelWeights {
  Linear embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;
  Linear lm_head;  // [vocab, hidden] (the embedding when tie_word_embeddings)
  std::vector<MtpWeights> mtp;
  int64_t bytes = 0;    // bytes of the weights held (checkpoint tensors bound, or quantized)
  int64_t tensors = 0;  // number of checkpoint tensors bound
  LoadRole role = LoadRole::kEverything;

  // Layer `index` in cache/expert numbering: main layers, then MTP blocks.
  const LayerWeights& Layer(int64_t index) const;
};

// What a projection is to the model, for passes over all of them (weight formats, huge pages).
enum class ProjectionKind {
  kEmbedding,  // embed_tokens, also an MTP block's copy: one row read per token
  kRouter,     // an MoE layer's expert scores
  kHead,       // the output heads (main and MTP)
  kBody,       // attention, dense and expert MLPs, eh_proj
};

// fn(p, kind) for every projection of `w` (empty ones too: roles bind only part of a model),
// main layers first, then the head, then the MTP blocks. A tied head is visited beside the
// embedding it shares its bytes with.
void ForEachProjection(ModelWeights* w, const std::function<void(Linear*, ProjectionKind)>& fn);

struct LoadOptions {
  bool load_mtp = true;  // false: MTP tensors are accepted but not bound
  // Tensors outside the role are neither bound, checked against the config, nor touched (they
  // may even be absent); names that belong to no part of the model are still an error. A
  // routed expert that is not loaded fails LocalExpertExecutor::Run with FailedPrecondition.
  LoadRole role = LoadRole::kEverything;
  // kRoutedExperts: the experts to hold, as (layer, expert) pairs and/or as expert ids taken in
  // every MoE layer (MTP layers included when load_mtp).
  std::vector<ExpertKey> experts;
  std::vector<int64_t> expert_ids;
  // Make the bound tensors' pages resident during Load (weight_residency.h), so resident
  // memory reflects what the role holds and requests do not page-fault the weights in.
  bool prefault = true;
  // With prefault: the projections still in the mapping (all of them as stored; embeddings,
  // routers and what a format leaves) are copied into transparent huge pages instead
  // (weight_residency.h: CopyToHugePages), which the decode kernels stream faster.
  bool huge_pages = true;
  ProgressMode progress = ProgressMode::kAuto;  // load progress on stderr (load_progress.h)
  // Projections as stored, or quantized at load (weight_format.h).
  WeightFormat weights = WeightFormat::kAsStored;
  // Quantized projections multiply int8-quantized activations (decode and prefill)
  // (kernels/matmul_int8.h), and kQ4/kQ8 ones above 24/32 rows bf16-rounded activations and
  // weights where the CPU has AVX512_BF16 (kernels/matmul_bf16.h); false keeps activations in f32
  // (slower, and exactly the dequantized weights' result).
  bool int8_activations = true;
  // BF16 projections multiply activations rounded to bf16 (Linear::bf16_activations) where
  // the CPU has AVX512_BF16, one kernel at every row count, as BF16 inference in PyTorch and
  // llama.cpp: half the instructions of splitting them into two bf16 parts from 2 rows on
  // (false: f32-level products, within 1e-4 of the reference's logits). FP8 projections round
  // them too: times the exact codes up to 16 rows, times the weights dequantised and rounded to
  // bf16 above (Linear::bf16_activations). Part of the model's identity
  // (ModelConfig::bf16_activations).
  bool bf16_activations = true;
  // Every projection computes a row the same whatever rows share its call (Linear::
  // batch_invariant): a request's tokens do not depend on what shares its decode steps, at the
  // cost of the kernels that change arithmetic with the row count. Part of the identity too.
  bool batch_invariant = false;
  // > 0: size of the engine's process-wide thread pool (ThreadPool::SetDefaultThreads);
  // 0 leaves it as it is (hardware threads unless set before).
  int num_threads = 0;
};

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint,
                                              const ModelConfig& config,
                                              const LoadOptions& options = {});

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MODEL_WEIGHTS_H_
