#include "engine/model.h"

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {

std::span<const float> ForwardResult::LogitsRow(size_t seq, int64_t i) const {
  const int64_t row = logits_begin[seq] + i;
  return {logits.data() + row * vocab_size, static_cast<size_t>(vocab_size)};
}

std::span<const float> ForwardResult::LastLogits(size_t seq) const {
  return LogitsRow(seq, logits_count[seq] - 1);
}

std::span<const float> ForwardResult::HiddenRow(size_t seq, int64_t i) const {
  const int64_t row = token_begin[seq] + i;
  return {hidden.data() + row * hidden_size, static_cast<size_t>(hidden_size)};
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir,
                                                   const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  if (options.num_threads > 0) ThreadPool::SetDefaultThreads(options.num_threads);
  DSV3_ASSIGN_OR_RETURN(m->config_, LoadModelConfig(dir));
  if (options.weights != WeightFormat::kAsStored) {
    m->config_.weight_format = std::string(WeightFormatName(options.weights));
  }
  m->config_.bf16_activations = options.bf16_activations;
  m->config_.batch_invariant = options.batch_invariant;
  DSV3_ASSIGN_OR_RETURN(m->checkpoint_, Checkpoint::Open(dir));
  DSV3_ASSIGN_OR_RETURN(m->weights_, LoadModelWeights(*m->checkpoint_, m->config_, options));
  m->config_.rows_alike = true;
  ForEachProjection(&m->weights_, [&](Linear* p, ProjectionKind) {
    if (!p->empty() && !RowsAlike(*p)) m->config_.rows_alike = false;
  });
  m->rope_ = std::make_unique<Rope>(m->config_);
  m->attention_ = std::make_unique<MlaAttention>(m->config_, *m->rope_);
  m->local_experts_ = std::make_unique<LocalExpertExecutor>(&m->weights_);
  m->experts_ = m->local_experts_.get();
  return m;
}

void Model::set_expert_executor(RoutedExpertExecutor* executor) {
  experts_ = executor != nullptr ? executor : local_experts_.get();
}

KvCacheLayout Model::KvLayout(int64_t num_blocks, int64_t block_size) const {
  return KvCacheLayout::ForModel(config_, num_blocks, block_size, /*include_mtp=*/true);
}

absl::Status Model::CheckPool(const KvCachePool& pool) const {
  const KvCacheLayout& l = pool.layout();
  if (l.kv_lora_rank != config_.kv_lora_rank || l.qk_rope_head_dim != config_.qk_rope_head_dim ||
      l.num_layers < config_.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV pool layout (", l.ToString(), ") does not fit this model"));
  }
  return absl::OkStatus();
}

absl::Status Model::CheckCanForward() const {
  if (weights_.role == LoadRole::kRoutedExperts) {
    return absl::FailedPreconditionError(
        "this model was loaded with role kRoutedExperts: it holds routed experts only (serve "
        "them through local_expert_executor()), no attention-side weights to run a forward step");
  }
  return absl::OkStatus();
}

absl::Status Model::ValidateTokens(std::span<const int32_t> tokens, int64_t start) const {
  if (tokens.empty()) return absl::InvalidArgumentError("empty token input");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", tokens[i], " at index ", i, " out of range [0, ", config_.vocab_size, ")"));
    }
  }
  const int64_t end = start + static_cast<int64_t>(tokens.size());
  if (end > config_.max_position_embeddings) {
    return absl::OutOfRangeError(absl::StrCat(end, " positions exceed max_position_embeddings ",
                                              config_.max_position_embeddings));
  }
  return absl::OkStatus();
}

LayerContext Model::MakeLayerContext(KvCachePool& pool, const ForwardOptions& options) const {
  LayerContext ctx;
  ctx.config = &config_;
  ctx.attention = attention_.get();
  ctx.pool = &pool;
  ctx.experts = experts_;
  ctx.form = options.attention;
  ctx.trace = options.trace;
  return ctx;
}

absl::StatusOr<ForwardResult> Model::Forward(std::span<const SequenceInput> batch,
                                             KvCachePool& pool,
                                             const ForwardOptions& options) const {
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  DSV3_RETURN_IF_ERROR(CheckCanForward());
  DSV3_RETURN_IF_ERROR(CheckPool(pool));
  std::set<const KvSequence*> distinct;
  std::vector<SequenceSlice> slices;
  int64_t rows = 0;
  for (const SequenceInput& in : batch) {
    if (in.kv == nullptr || !distinct.insert(in.kv).second) {
      return absl::InvalidArgumentError("each batch entry needs its own KvSequence");
    }
    DSV3_RETURN_IF_ERROR(ValidateTokens(in.tokens, in.kv->num_tokens));
    SequenceSlice s;
    s.token_begin = rows;
    s.num_tokens = static_cast<int64_t>(in.tokens.size());
    s.start_pos = in.kv->num_tokens;
    s.kv = in.kv;
    slices.push_back(s);
    rows += s.num_tokens;
  }
  for (const SequenceInput& in : batch) {
    DSV3_RETURN_IF_ERROR(
        pool.Reserve(*in.kv, in.kv->num_tokens + static_cast<int64_t>(in.tokens.size())));
  }

  const int64_t hidden = config_.hidden_size;
  std::vector<float> x(static_cast<size_t>(rows * hidden));  // {rows, hidden} residual stream
  for (size_t b = 0; b < batch.size(); ++b) {
    for (int64_t i = 0; i < slices[b].num_tokens; ++i) {
      weights_.embed.DequantRow(batch[b].tokens[i], 0, hidden,
                                &x[static_cast<size_t>((slices[b].token_begin + i) * hidden)]);
    }
  }
  const LayerContext ctx = MakeLayerContext(pool, options);
  auto stage_start = std::chrono::steady_clock::now();
  auto end_stage = [&] {
    if (options.stage_seconds == nullptr) return;
    const auto now = std::chrono::steady_clock::now();
    options.stage_seconds->push_back(std::chrono::duration<double>(now - stage_start).count());
    stage_start = now;
  };
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    DSV3_RETURN_IF_ERROR(DecoderLayerForward(ctx, weights_.layers[static_cast<size_t>(l)], l,
                                             slices, rows, x.data()));
    if (options.on_layer_kv_written) options.on_layer_kv_written(l);
    end_stage();
  }
  RmsNormRows(x.data(), hidden, weights_.final_norm.data(), hidden, rows,
              static_cast<float>(config_.rms_norm_eps), x.data(), hidden);

  std::vector<bool> all_logits;
  for (const SequenceInput& in : batch) all_logits.push_back(in.all_logits);
  ForwardResult out = ApplyHead(slices, all_logits, x, hidden, weights_.lm_head);
  end_stage();
  if (options.return_hidden) out.hidden = std::move(x);
  for (const SequenceInput& in : batch) in.kv->num_tokens += static_cast<int64_t>(in.tokens.size());
  return out;
}

ForwardResult ApplyHead(std::span<const SequenceSlice> slices, const std::vector<bool>& all_logits,
                        const std::vector<float>& x, int64_t hidden, const Linear& head) {
  ForwardResult out;
  out.vocab_size = head.out_features;
  out.hidden_size = hidden;
  std::vector<float> head_in;  // {logits rows, hidden}
  for (size_t b = 0; b < slices.size(); ++b) {
    const SequenceSlice& s = slices[b];
    const int64_t first = all_logits[b] ? 0 : s.num_tokens - 1;
    out.logits_begin.push_back(static_cast<int64_t>(head_in.size()) / hidden);
    out.logits_count.push_back(s.num_tokens - first);
    head_in.insert(head_in.end(), x.begin() + (s.token_begin + first) * hidden,
                   x.begin() + (s.token_begin + s.num_tokens) * hidden);
    out.token_begin.push_back(s.token_begin);
  }
  const int64_t logit_rows = static_cast<int64_t>(head_in.size()) / hidden;
  out.logits.resize(static_cast<size_t>(logit_rows * out.vocab_size));
  MatMul(head_in.data(), logit_rows, head, out.logits.data());
  return out;
}

}  // namespace dsv3::engine
