#ifndef DSV3_ENGINE_MODEL_H_
#define DSV3_ENGINE_MODEL_H_

// A loaded DeepSeek-V3-architecture model and its batched, ragged forward step.
//
//   auto model = Model::Load(dir);                        // config.json + safetensors (mmap)
//   auto pool = KvCachePool::Create(model->KvLayout(256)); // 256 blocks of 64 positions
//   KvSequence seq;                                       // one per request
//   SequenceInput in{tokens, &seq, /*all_logits=*/false};
//   auto out = model->Forward({&in, 1}, **pool);          // appends tokens' KV, seq.num_tokens +=
//   n out->LastLogits(0)                                    // next-token logits
//
// Forward validates every sequence (non-empty, ids < vocab_size, positions within
// max_position_embeddings, blocks available) before computing anything. A sequence's logits do
// not depend on the rest of the batch beyond float rounding. Forward is const and keeps its
// scratch on the stack/heap of the call: concurrent calls on different pools are safe. The
// kernels run on the process-wide engine thread pool (thread_pool.h, sized by
// LoadOptions::num_threads; hardware threads by default); a call that finds it busy runs on its
// own thread. LoadOptions::role selects what a process holds (model_weights.h).

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/batch.h"
#include "engine/decoder_layer.h"
#include "engine/kv_cache.h"
#include "engine/mla_attention.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/rope.h"
#include "engine/routed_experts.h"
#include "engine/safetensors.h"

namespace dsv3::engine {

struct SequenceInput {
  std::span<const int32_t> tokens;  // new tokens, at positions kv->num_tokens ...
  KvSequence* kv = nullptr;
  bool all_logits = false;  // logits for every new token; else for the last only
};

struct ForwardOptions {
  AttentionForm attention = AttentionForm::kAuto;
  bool return_hidden = false;  // final-normed hidden states of every new token (MTP input)
  ForwardTrace* trace = nullptr;
  // Called after each main layer has written the new tokens' latent KV rows into the pool
  // (before the next layer runs): a prefill worker starts sending that layer meanwhile.
  std::function<void(int64_t layer)> on_layer_kv_written;
  // When set (benchmarks): wall seconds of each main layer, then of the final norm and the
  // head, appended (num_hidden_layers + 1 entries a call).
  std::vector<double>* stage_seconds = nullptr;
};

struct ForwardResult {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  std::vector<float> logits;          // [logits rows, vocab_size]
  std::vector<int64_t> logits_begin;  // per sequence: its first logits row
  std::vector<int64_t> logits_count;  // per sequence: 1 or its number of new tokens
  std::vector<float> hidden;          // [new tokens, hidden_size] when requested
  std::vector<int64_t> token_begin;   // per sequence: its first row in `hidden`

  std::span<const float> LogitsRow(size_t seq, int64_t i) const;
  std::span<const float> LastLogits(size_t seq) const;
  std::span<const float> HiddenRow(size_t seq, int64_t i) const;
};

// The head of a forward step: per sequence, the logits of its last row (or of every row when
// `all_logits`), from the final-normed rows `x` ({rows, hidden}) through `head`.
ForwardResult ApplyHead(std::span<const SequenceSlice> slices, const std::vector<bool>& all_logits,
                        const std::vector<float>& x, int64_t hidden, const Linear& head);

class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir,
                                                     const LoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  bool has_mtp() const { return !weights_.mtp.empty(); }
  // Routes the routed experts elsewhere (not owned); nullptr restores the in-process experts.
  void set_expert_executor(RoutedExpertExecutor* executor);
  // The in-process executor over the routed experts this model holds (what an expert worker
  // serves when loaded with LoadRole::kRoutedExperts).
  LocalExpertExecutor& local_expert_executor() const { return *local_experts_; }

  KvCacheLayout KvLayout(int64_t num_blocks, int64_t block_size = 64) const;

  // Checks tokens appended at `start` (ids in range, non-empty, within max_position_embeddings).
  absl::Status ValidateTokens(std::span<const int32_t> tokens, int64_t start) const;

  absl::StatusOr<ForwardResult> Forward(std::span<const SequenceInput> batch, KvCachePool& pool,
                                        const ForwardOptions& options = {}) const;

  // For the MTP forward (mtp.h).
  LayerContext MakeLayerContext(KvCachePool& pool, const ForwardOptions& options) const;
  absl::Status CheckPool(const KvCachePool& pool) const;
  // FailedPrecondition when the load role holds no attention-side weights.
  absl::Status CheckCanForward() const;

 private:
  Model() = default;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Rope> rope_;
  std::unique_ptr<MlaAttention> attention_;
  std::unique_ptr<LocalExpertExecutor> local_experts_;
  RoutedExpertExecutor* experts_ = nullptr;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MODEL_H_
