// DecodeScheduler's step: one forward pass over the running batch (decode_scheduler.h), with
// the MTP drafts it verifies and the chunks of prompts computed here (prefill_here).

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "decode_worker/decode_scheduler.h"
#include "engine/mtp.h"
#include "engine/thread_pool.h"

namespace dsv3::decode {

std::vector<int32_t> DecodeScheduler::Draft(const std::vector<Sequence*>& active) {
  std::vector<int32_t> drafts(active.size(), -1);
  std::vector<engine::MtpInput> inputs;
  std::vector<size_t> which;
  const int64_t context = model_.config().max_position_embeddings;
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence* seq = active[i];
    if (!seq->speculative || seq->mtp_next.empty() || !seq->pending_prompt.empty()) continue;
    // A draft only where its token could still be emitted and stored.
    if (seq->generated + 1 >= seq->max_tokens || seq->kv.num_tokens + 2 > context) continue;
    inputs.push_back(engine::MtpInput{seq->mtp_hidden, seq->mtp_next, &seq->kv, false});
    which.push_back(i);
  }
  if (inputs.empty()) return drafts;
  absl::StatusOr<engine::ForwardResult> out = engine::MtpForward(model_, inputs, *pool_);
  if (!out.ok()) {
    // Drafting is an optimisation: without it the step is a plain one.
    DSV3_LOG(WARNING) << "MTP draft failed: " << out.status();
    return drafts;
  }
  for (size_t j = 0; j < which.size(); ++j) {
    // A structured output's draft is taken among the tokens its grammar allows next (what
    // the verification would refuse is no draft).
    std::span<const float> row = out->LastLogits(j);
    engine::RequestSampler& sampler = *active[which[j]]->sampler;
    if (!sampler.constrained()) {
      drafts[which[j]] =
          static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      continue;
    }
    std::vector<float> logits(row.begin(), row.end());
    absl::StatusOr<int32_t> draft = sampler.Draft(logits);
    if (draft.ok()) drafts[which[j]] = *draft;
  }
  return drafts;
}

bool DecodeScheduler::FinishLocalPrefill(
    Sequence* seq, const engine::ForwardResult& out, size_t index,
    const std::function<void(Sequence*, v1::FinishReason, const absl::Status&)>& finish) {
  absl::StatusOr<engine::SampledToken> token = seq->sampler->Sample(out.LastLogits(index));
  if (!token.ok()) {
    seq->pending_prompt.clear();
    finish(seq, v1::FINISH_REASON_ERROR, token.status());
    return false;
  }
  seq->generated = 1;
  seq->tokens.push_back(token->token);
  const std::vector<engine::SampledToken> emitted = {*token};
  seq->sink->OnTokens(emitted);
  if (seq->speculative) {
    // Pending MTP rows: (h_p, token p+1) for every position the steps computed
    // (mtp_num_tokens is still where the cached prefix ends; see KeepPrefillHidden).
    seq->mtp_next.assign(seq->pending_prompt.begin() + 1, seq->pending_prompt.end());
    seq->mtp_next.push_back(token->token);
  }
  seq->pending_prompt.clear();
  if (token->is_stop || token->token == seq->eos_token_id) {
    finish(seq, v1::FINISH_REASON_STOP, absl::OkStatus());
    return false;
  }
  if (seq->generated >= seq->max_tokens) {
    finish(seq, v1::FINISH_REASON_LENGTH, absl::OkStatus());
    return false;
  }
  seq->next_input = token->token;
  return true;
}

void DecodeScheduler::KeepPrefillHidden(Sequence* seq, const engine::ForwardResult& out,
                                        size_t index, int64_t rows) {
  if (!seq->speculative) return;
  const int64_t hidden = model_.config().hidden_size;
  const size_t at = seq->mtp_hidden.size();
  seq->mtp_hidden.resize(at + static_cast<size_t>(rows * hidden));
  for (int64_t r = 0; r < rows; ++r) {
    std::span<const float> h = out.HiddenRow(index, r);
    std::copy(h.begin(), h.end(), seq->mtp_hidden.begin() + at + r * hidden);
  }
}

std::vector<DecodeScheduler::Sequence*> DecodeScheduler::Step(const std::vector<Sequence*>& batch) {
  std::vector<Sequence*> finished;
  std::vector<Sequence*> active;
  std::vector<engine::SequenceInput> inputs;
  const int64_t context = model_.config().max_position_embeddings;
  auto finish = [&](Sequence* seq, v1::FinishReason reason, const absl::Status& status) {
    v1::Usage usage;
    usage.set_prompt_tokens(seq->prompt_tokens);
    usage.set_completion_tokens(seq->generated);
    usage.set_cached_prompt_tokens(seq->cached_prompt_tokens);
    usage.set_draft_tokens(seq->drafted);
    usage.set_accepted_draft_tokens(seq->accepted);
    seq->sink->OnFinish(reason, usage, status);
    seq->failed = reason == v1::FINISH_REASON_ERROR;
    finished.push_back(seq);
  };
  // prefill_here suffixes share a budget of tokens per step; one left without sits out.
  int64_t budget = options_.local_prefill_chunk_tokens > 0 ? options_.local_prefill_chunk_tokens
                                                           : std::numeric_limits<int64_t>::max();
  std::vector<int64_t> chunks;
  for (Sequence* seq : batch) {
    if (seq->kv.num_tokens + 1 > context) {
      finish(seq, v1::FINISH_REASON_CONTEXT_FULL, absl::OkStatus());
      continue;
    }
    int64_t chunk = 0;
    if (!seq->pending_prompt.empty()) {
      chunk = std::min<int64_t>(
          budget, static_cast<int64_t>(seq->pending_prompt.size()) - seq->prefill_done);
      if (chunk <= 0) continue;
      budget -= chunk;
    }
    active.push_back(seq);
    chunks.push_back(chunk);
  }
  if (active.empty()) return finished;
  const std::vector<int32_t> drafts = Draft(active);
  std::vector<std::vector<int32_t>> tokens(active.size());
  bool any_draft = false;
  for (size_t i = 0; i < active.size(); ++i) {
    if (!active[i]->pending_prompt.empty()) {
      // prefill_here: the next chunk of the prompt's uncached suffix (logits for its last
      // position only).
      inputs.push_back(
          engine::SequenceInput{std::span<const int32_t>(active[i]->pending_prompt)
                                    .subspan(static_cast<size_t>(active[i]->prefill_done),
                                             static_cast<size_t>(chunks[i])),
                                &active[i]->kv, false});
      continue;
    }
    tokens[i] = {active[i]->next_input};
    if (drafts[i] >= 0) {
      tokens[i].push_back(drafts[i]);
      any_draft = true;
    }
    inputs.push_back(engine::SequenceInput{tokens[i], &active[i]->kv, drafts[i] >= 0});
  }
  engine::ForwardOptions options;
  options.return_hidden = any_draft || std::any_of(active.begin(), active.end(),
                                                   [](Sequence* s) { return s->speculative; });
  absl::StatusOr<engine::ForwardResult> out = model_.Forward(inputs, *pool_, options);
  if (!out.ok()) {
    DSV3_LOG(ERROR) << "decode step failed: " << out.status();
    for (Sequence* seq : active) finish(seq, v1::FINISH_REASON_ERROR, out.status());
    return finished;
  }
  const int64_t hidden = model_.config().hidden_size;
  const ServingMetrics& m = Metrics();
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence* seq = active[i];
    if (!seq->pending_prompt.empty()) {
      KeepPrefillHidden(seq, *out, i, chunks[i]);
      seq->prefill_done += chunks[i];
      if (seq->prefill_done == static_cast<int64_t>(seq->pending_prompt.size())) {
        FinishLocalPrefill(seq, *out, i, finish);
      }
      continue;
    }
    const int64_t base = seq->kv.num_tokens - static_cast<int64_t>(tokens[i].size());
    std::vector<engine::SampledToken> emitted;
    bool done = false;
    // Verify: sample each row in order; a draft stands while it equals the sample.
    const int64_t rows = static_cast<int64_t>(tokens[i].size());
    for (int64_t r = 0; r < rows && !done; ++r) {
      std::span<const float> logits = rows > 1 ? out->LogitsRow(i, r) : out->LastLogits(i);
      absl::StatusOr<engine::SampledToken> token = seq->sampler->Sample(logits);
      if (!token.ok()) {
        finish(seq, v1::FINISH_REASON_ERROR, token.status());
        done = true;
        break;
      }
      ++seq->generated;
      emitted.push_back(*token);
      if (token->is_stop || token->token == seq->eos_token_id) {
        seq->sink->OnTokens(emitted);
        finish(seq, v1::FINISH_REASON_STOP, absl::OkStatus());
        done = true;
      } else if (seq->generated >= seq->max_tokens) {
        seq->sink->OnTokens(emitted);
        finish(seq, v1::FINISH_REASON_LENGTH, absl::OkStatus());
        done = true;
      } else if (r + 1 >= rows || token->token != tokens[i][r + 1]) {
        break;  // the draft (if any) was rejected here, or every row is used
      }
    }
    if (drafts[i] >= 0) {
      ++seq->drafted;
      const bool accepted = emitted.size() == 2;
      seq->accepted += accepted;
      m.spec_drafts.WithLabels({options_.model_name}).Increment();
      m.spec_draft_tokens.WithLabels({options_.model_name}).Increment();
      if (accepted) m.spec_accepted_tokens.WithLabels({options_.model_name}).Increment();
    }
    const int64_t kept = static_cast<int64_t>(emitted.size());  // accepted drafts + 1
    // Positions base..base+kept-1 hold verified KV; a rejected draft's row is overwritten.
    seq->kv.num_tokens = base + kept;
    for (const auto& t : emitted) seq->tokens.push_back(t.token);
    if (done) continue;
    seq->sink->OnTokens(emitted);
    seq->next_input = emitted.back().token;
    if (seq->speculative) {
      // Next MTP rows: (h_p, token p+1) for the positions just verified.
      seq->kv.mtp_num_tokens = base;
      seq->mtp_hidden.resize(static_cast<size_t>(kept * hidden));
      for (int64_t r = 0; r < kept; ++r) {
        std::span<const float> h = out->HiddenRow(i, r);
        std::copy(h.begin(), h.end(), seq->mtp_hidden.begin() + r * hidden);
      }
      seq->mtp_next.clear();
      for (const auto& t : emitted) seq->mtp_next.push_back(t.token);
    }
  }
  return finished;
}

}  // namespace dsv3::decode
