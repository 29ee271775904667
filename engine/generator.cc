#include "engine/generator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/mtp.h"
#include "engine/status_macros.h"

namespace dsv3::engine {
namespace {

int32_t Argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

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
    const bool stop = t.is_stop;
    result_.tokens.push_back(std::move(t));
    return !stop && static_cast<int64_t>(result_.tokens.size()) < options_.max_new_tokens;
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

  // Runs the MTP layer over `rows` rows of main hidden states (from `hidden`) and their next
  // tokens, then chains further drafts; returns up to `k` greedy drafts.
  absl::StatusOr<std::vector<int32_t>> Draft(std::span<const float> hidden,
                                             std::span<const int32_t> next_tokens, int64_t k) {
    std::vector<int32_t> drafts;
    if (k <= 0) return drafts;
    MtpInput in{hidden, next_tokens, &seq_, false};
    DSV3_ASSIGN_OR_RETURN(ForwardResult out, MtpForward(model_, {&in, 1}, *pool_));
    drafts.push_back(Argmax(out.LastLogits(0)));
    const int64_t h = model_.config().hidden_size;
    std::vector<float> g(out.hidden.end() - h, out.hidden.end());
    while (static_cast<int64_t>(drafts.size()) < k) {
      const int32_t last = drafts.back();
      MtpInput chain{g, {&last, 1}, &seq_, false};
      DSV3_ASSIGN_OR_RETURN(ForwardResult step, MtpForward(model_, {&chain, 1}, *pool_));
      drafts.push_back(Argmax(step.LastLogits(0)));
      g.assign(step.hidden.end() - h, step.hidden.end());
    }
    if (options_.draft_override) {
      const std::vector<int32_t> emitted = result_.token_ids();
      drafts = options_.draft_override(emitted, k);
      if (static_cast<int64_t>(drafts.size()) > k) drafts.resize(static_cast<size_t>(k));
      DSV3_RETURN_IF_ERROR(model_.ValidateTokens(drafts.empty() ? next_tokens : drafts, 0));
    }
    return drafts;
  }

  int64_t DraftBudget() const {
    const int64_t remaining = options_.max_new_tokens - static_cast<int64_t>(result_.tokens.size());
    const int64_t room = model_.config().max_position_embeddings - seq_.num_tokens - 1;
    return std::max<int64_t>(0,
                             std::min<int64_t>({options_.num_draft_tokens, remaining - 1, room}));
  }

  absl::Status RunSpeculative(std::span<const int32_t> prompt) {
    const int64_t h = model_.config().hidden_size;
    const int64_t n = static_cast<int64_t>(prompt.size());
    ForwardOptions with_hidden;
    with_hidden.return_hidden = true;
    SequenceInput in{prompt, &seq_, false};
    DSV3_ASSIGN_OR_RETURN(ForwardResult out, model_.Forward({&in, 1}, *pool_, with_hidden));
    ++result_.main_steps;
    DSV3_ASSIGN_OR_RETURN(bool more, Emit(out.LastLogits(0)));
    if (!more) return absl::OkStatus();
    // MTP rows 0..n-1: (h_i, t_{i+1}), the last one with the token just sampled.
    std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
    next.push_back(result_.tokens.back().token);
    DSV3_ASSIGN_OR_RETURN(
        std::vector<int32_t> drafts,
        Draft(std::span<const float>(out.hidden).subspan(0, n * h), next, DraftBudget()));
    for (;;) {
      const int64_t base = seq_.num_tokens;  // position of the last emitted token
      std::vector<int32_t> verify = {result_.tokens.back().token};
      verify.insert(verify.end(), drafts.begin(), drafts.end());
      SequenceInput vin{verify, &seq_, true};
      DSV3_ASSIGN_OR_RETURN(ForwardResult vout, model_.Forward({&vin, 1}, *pool_, with_hidden));
      ++result_.main_steps;
      result_.drafted += static_cast<int64_t>(drafts.size());
      int64_t accepted = 0;
      bool go_on = true;
      for (size_t j = 0; j <= drafts.size(); ++j) {
        DSV3_ASSIGN_OR_RETURN(go_on, Emit(vout.LogitsRow(0, static_cast<int64_t>(j))));
        if (j == drafts.size() || result_.tokens.back().token != drafts[j]) break;
        ++accepted;
        if (!go_on) break;
      }
      result_.accepted += accepted;
      if (!go_on) return absl::OkStatus();
      // Keep the KV of the last emitted token's predecessors only: positions base..base+accepted.
      seq_.num_tokens = base + accepted + 1;
      seq_.mtp_num_tokens = base;
      std::vector<int32_t> mtp_next(drafts.begin(), drafts.begin() + accepted);
      mtp_next.push_back(result_.tokens.back().token);
      DSV3_ASSIGN_OR_RETURN(
          drafts, Draft(std::span<const float>(vout.hidden).subspan(0, (accepted + 1) * h),
                        mtp_next, DraftBudget()));
    }
  }

  GenerateResult TakeResult() { return std::move(result_); }

 private:
  const Model& model_;
  const GenerateOptions& options_;
  RequestSampler sampler_;
  std::unique_ptr<KvCachePool> pool_;
  KvSequence seq_;
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
