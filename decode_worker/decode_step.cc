// DecodeScheduler's step: one forward pass over the running batch (decode_scheduler.h), with
// the MTP drafts it verifies and the chunks of prompts computed here (prefill_here).

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "decode_worker/decode_scheduler.h"
#include "engine/mtp.h"
#include "engine/thread_pool.h"

namespace dsv3::decode {

std::vector<std::vector<int32_t>> DecodeScheduler::Draft(const std::vector<Sequence*>& active) {
  std::vector<engine::DraftRequest> requests;
  const int64_t context = model_.config().max_position_embeddings;
  for (Sequence* seq : active) {
    engine::DraftRequest& r = requests.emplace_back();
    r.kv = &seq->kv;
    r.state = &seq->spec;
    r.sampler = seq->sampler.get();
    if (seq->speculative && seq->pending_prompt.empty()) {
      r.max_drafts = engine::DraftBudget(options_.num_draft_tokens,
                                         seq->max_tokens - seq->generated, seq->kv, context);
    }
  }
  absl::StatusOr<std::vector<std::vector<int32_t>>> drafts =
      engine::DraftTokens(model_, *pool_, requests);
  if (!drafts.ok()) {
    // Drafting is an optimisation: without it the step is a plain one.
    DSV3_LOG(WARNING) << "MTP draft failed: " << drafts.status();
    return std::vector<std::vector<int32_t>>(active.size());
  }
  return *std::move(drafts);
}

bool DecodeScheduler::FinishLocalPrefill(
    Sequence* seq, const engine::ForwardResult& out, size_t index,
    const std::function<void(Sequence*, worker::FinishReason, const absl::Status&)>& finish) {
  absl::StatusOr<engine::SampledToken> token = seq->sampler->Sample(out.LastLogits(index));
  if (!token.ok()) {
    seq->pending_prompt.clear();
    finish(seq, worker::FinishReason::kError, token.status());
    return false;
  }
  seq->generated = 1;
  seq->tokens.push_back(token->token);
  const std::vector<engine::SampledToken> emitted = {*token};
  seq->sink->OnTokens(emitted);
  if (seq->speculative) {
    // Pending MTP rows: (h_p, token p+1) for every position the steps computed
    // (mtp_num_tokens is still where the cached prefix ends; see KeepPrefillHidden).
    seq->spec.next.assign(seq->pending_prompt.begin() + 1, seq->pending_prompt.end());
    seq->spec.next.push_back(token->token);
  }
  seq->pending_prompt.clear();
  if (token->is_stop || token->token == seq->eos_token_id) {
    finish(seq, worker::FinishReason::kStop, absl::OkStatus());
    return false;
  }
  if (seq->generated >= seq->max_tokens) {
    finish(seq, worker::FinishReason::kLength, absl::OkStatus());
    return false;
  }
  seq->next_input = token->token;
  return true;
}

void DecodeScheduler::KeepPrefillHidden(Sequence* seq, const engine::ForwardResult& out,
                                        size_t index, int64_t rows) {
  if (!seq->speculative) return;
  const int64_t hidden = model_.config().hidden_size;
  const size_t at = seq->spec.hidden.size();
  seq->spec.hidden.resize(at + static_cast<size_t>(rows * hidden));
  for (int64_t r = 0; r < rows; ++r) {
    std::span<const float> h = out.HiddenRow(index, r);
    std::copy(h.begin(), h.end(), seq->spec.hidden.begin() + at + r * hidden);
  }
}

std::vector<DecodeScheduler::Sequence*> DecodeScheduler::Step(const std::vector<Sequence*>& batch) {
  std::vector<Sequence*> finished;
  std::vector<Sequence*> active;
  std::vector<engine::SequenceInput> inputs;
  const int64_t context = model_.config().max_position_embeddings;
  auto finish = [&](Sequence* seq, worker::FinishReason reason, const absl::Status& status) {
    seq->sink->OnFinish(reason, seq->Usage(), status);
    seq->failed = reason == worker::FinishReason::kError;
    finished.push_back(seq);
  };
  // prefill_here suffixes share a budget of tokens per step; one left without sits out.
  int64_t budget = options_.local_prefill_chunk_tokens > 0 ? options_.local_prefill_chunk_tokens
                                                           : std::numeric_limits<int64_t>::max();
  std::vector<int64_t> chunks;
  for (Sequence* seq : batch) {
    if (seq->kv.num_tokens + 1 > context) {
      finish(seq, worker::FinishReason::kContextFull, absl::OkStatus());
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
  const std::vector<std::vector<int32_t>> drafts = Draft(active);
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
    tokens[i] = engine::VerifyInput(active[i]->next_input, drafts[i]);
    any_draft |= !drafts[i].empty();
    inputs.push_back(engine::SequenceInput{tokens[i], &active[i]->kv, !drafts[i].empty()});
  }
  engine::ForwardOptions options;
  options.return_hidden = any_draft || std::any_of(active.begin(), active.end(),
                                                   [](Sequence* s) { return s->speculative; });
  absl::StatusOr<engine::ForwardResult> out = model_.Forward(inputs, *pool_, options);
  if (!out.ok()) {
    DSV3_LOG(ERROR) << "decode step failed: " << out.status();
    for (Sequence* seq : active) finish(seq, worker::FinishReason::kError, out.status());
    return finished;
  }
  // Each sequence samples from its own rows with its own sampler: the pool's threads take the
  // sequences in turn (a step at batch 32 samples 32 rows of 129,280 logits).
  std::vector<std::optional<absl::StatusOr<engine::Verified>>> verified(active.size());
  std::vector<std::optional<worker::FinishReason>> reasons(active.size());
  engine::ThreadPool::Default().ParallelForDynamic(
      static_cast<int64_t>(active.size()), [&](int64_t i, int) {
        Sequence* seq = active[static_cast<size_t>(i)];
        if (!seq->pending_prompt.empty()) return;
        std::optional<worker::FinishReason>& reason = reasons[static_cast<size_t>(i)];
        auto more = [&](const engine::SampledToken& token) {
          ++seq->generated;
          if (token.is_stop || token.token == seq->eos_token_id) {
            reason = worker::FinishReason::kStop;
          } else if (seq->generated >= seq->max_tokens) {
            reason = worker::FinishReason::kLength;
          }
          return !reason.has_value();
        };
        verified[static_cast<size_t>(i)] = engine::SampleVerified(
            *seq->sampler, *out, static_cast<size_t>(i), tokens[static_cast<size_t>(i)], more);
      });
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
    absl::StatusOr<engine::Verified>& v = *verified[i];
    if (!v.ok()) {
      finish(seq, worker::FinishReason::kError, v.status());
      continue;
    }
    const int64_t accepted_before = seq->spec.accepted;
    engine::AcceptVerified(*out, i, tokens[i], v->emitted, seq->kv,
                           seq->speculative ? &seq->spec : nullptr);
    if (!drafts[i].empty()) {
      const std::string& model = options_.model_name;
      m.spec_drafts.WithLabels({model}).Increment();
      m.spec_draft_tokens.WithLabels({model}).Increment(static_cast<double>(drafts[i].size()));
      m.spec_accepted_tokens.WithLabels({model}).Increment(
          static_cast<double>(seq->spec.accepted - accepted_before));
    }
    for (const auto& t : v->emitted) seq->tokens.push_back(t.token);
    seq->sink->OnTokens(v->emitted);
    if (v->stopped) {
      finish(seq, *reasons[i], absl::OkStatus());
      continue;
    }
    seq->next_input = v->emitted.back().token;
  }
  return finished;
}

}  // namespace dsv3::decode
