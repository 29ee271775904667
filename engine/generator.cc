#include "engine/generator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/speculative.h"

namespace dsv3::engine {
namespace {

class Session {
 public:
  Session(const Model& model, const GenerateOptions& options, RequestSampler sampler)
      : model_(model), options_(options), sampler_(std::move(sampler)) {}

  absl::Status Init(int64_t positions) {
    const int64_t blocks = (positions + options_.block_size - 1) / options_.block_size;
    DSV3_ASSIGN_OR_RETURN(pool_, KvCachePool::Create(model_.KvLayout(blocks, options_.block_size)));
    return absl::OkStatus();
  }

  // Samples from `logits` and records the token; returns false when generation must stop.
  absl::StatusOr<bool> Emit(std::span<const float> logits) {
    DSV3_ASSIGN_OR_RETURN(SampledToken t, sampler_.Sample(logits));
    return More(t);
  }

  // Records a sampled token; returns false when generation must stop.
  bool More(const SampledToken& t) {
    result_.tokens.push_back(t);
    return !t.is_stop && static_cast<int64_t>(result_.tokens.size()) < options_.max_new_tokens;
  }

  absl::Status RunPlain(std::span<const int32_t> prompt) {
    std::vector<int32_t> next(prompt.begin(), prompt.end());
    for (;;) {
      SequenceInput in{next, &seq_, false};
      DSV3_ASSIGN_OR_RETURN(ForwardResult out, model_.Forward({&in, 1}, *pool_));
      ++result_.main_steps;
      DSV3_ASSIGN_OR_RETURN(bool more, Emit(out.LastLogits(0)));
      if (!more) return absl::OkStatus();
      next = {result_.tokens.back().token};
    }
  }

  // Appends the pending MTP rows and chains up to DraftBudget() drafts (speculative.h).
  absl::StatusOr<std::vector<int32_t>> Draft() {
    const int64_t remaining = options_.max_new_tokens - static_cast<int64_t>(result_.tokens.size());
    const DraftRequest request{&seq_, &spec_,
                               DraftBudget(options_.num_draft_tokens, remaining, seq_,
                                           model_.config().max_position_embeddings)};
    DSV3_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> drafts,
                          DraftTokens(model_, *pool_, {&request, 1}));
    if (options_.draft_override && request.max_drafts > 0) {
      const std::vector<int32_t> emitted = result_.token_ids();
      drafts[0] = options_.draft_override(emitted, request.max_drafts);
      if (static_cast<int64_t>(drafts[0].size()) > request.max_drafts) {
        drafts[0].resize(static_cast<size_t>(request.max_drafts));
      }
      if (!drafts[0].empty()) DSV3_RETURN_IF_ERROR(model_.ValidateTokens(drafts[0], 0));
    }
    return std::move(drafts[0]);
  }

  absl::Status RunSpeculative(std::span<const int32_t> prompt) {
    ForwardOptions with_hidden;
    with_hidden.return_hidden = true;
    SequenceInput in{prompt, &seq_, false};
    DSV3_ASSIGN_OR_RETURN(ForwardResult out, model_.Forward({&in, 1}, *pool_, with_hidden));
    ++result_.main_steps;
    DSV3_ASSIGN_OR_RETURN(bool more, Emit(out.LastLogits(0)));
    if (!more) return absl::OkStatus();
    // MTP rows 0..n-1: (h_i, t_{i+1}), the last one with the token just sampled.
    spec_.hidden = std::move(out.hidden);
    spec_.next.assign(prompt.begin() + 1, prompt.end());
    spec_.next.push_back(result_.tokens.back().token);
    auto more_fn = [this](const SampledToken& t) { return More(t); };
    for (;;) {
      DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> drafts, Draft());
      const std::vector<int32_t> fed = VerifyInput(result_.tokens.back().token, drafts);
      SequenceInput vin{fed, &seq_, true};
      DSV3_ASSIGN_OR_RETURN(ForwardResult vout, model_.Forward({&vin, 1}, *pool_, with_hidden));
      ++result_.main_steps;
      DSV3_ASSIGN_OR_RETURN(Verified v, SampleVerified(sampler_, vout, 0, fed, more_fn));
      AcceptVerified(vout, 0, fed, v.emitted, seq_, &spec_);
      if (v.stopped) return absl::OkStatus();
    }
  }

  GenerateResult TakeResult() {
    result_.drafted = spec_.drafted;
    result_.accepted = spec_.accepted;
    return std::move(result_);
  }

 private:
  const Model& model_;
  const GenerateOptions& options_;
  RequestSampler sampler_;
  std::unique_ptr<KvCachePool> pool_;
  KvSequence seq_;
  SpeculativeState spec_;
  GenerateResult result_;
};

}  // namespace

std::vector<int32_t> GenerateResult::token_ids() const {
  std::vector<int32_t> ids;
  for (const SampledToken& t : tokens) ids.push_back(t.token);
  return ids;
}

absl::StatusOr<GenerateResult> Generate(const Model& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options) {
  if (options.max_new_tokens <= 0) {
    return absl::InvalidArgumentError("max_new_tokens must be positive");
  }
  if (options.block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  if (options.speculative_mtp && !model.has_mtp()) {
    return absl::FailedPreconditionError(
        "speculative decoding with MTP needs a model with num_nextn_predict_layers > 0");
  }
  if (options.speculative_mtp && options.num_draft_tokens < 1) {
    return absl::InvalidArgumentError("num_draft_tokens must be >= 1");
  }
  DSV3_RETURN_IF_ERROR(model.ValidateTokens(prompt, 0));
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
  if (total > model.config().max_position_embeddings) {
    return absl::OutOfRangeError(
        absl::StrCat("prompt (", prompt.size(), ") + max_new_tokens (", options.max_new_tokens,
                     ") exceeds max_position_embeddings ", model.config().max_position_embeddings));
  }
  DSV3_ASSIGN_OR_RETURN(
      RequestSampler sampler,
      RequestSampler::Create(options.sampling, model.config().vocab_size, prompt));
  Session session(model, options, std::move(sampler));
  const int64_t drafts = options.speculative_mtp ? options.num_draft_tokens : 0;
  DSV3_RETURN_IF_ERROR(session.Init(total + drafts + 1));
  if (options.speculative_mtp) {
    DSV3_RETURN_IF_ERROR(session.RunSpeculative(prompt));
  } else {
    DSV3_RETURN_IF_ERROR(session.RunPlain(prompt));
  }
  return session.TakeResult();
}

}  // namespace dsv3::engine
