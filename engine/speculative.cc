#include "engine/speculative.h"

#include <algorithm>

#include "common/status_macros.h"
#include "engine/kernels/logits.h"
#include "engine/mtp.h"

namespace dsv3::engine {
namespace {

int32_t Argmax(std::span<const float> row) {
  return static_cast<int32_t>(ArgmaxFirst(row.data(), static_cast<int64_t>(row.size())));
}

}  // namespace

int64_t DraftBudget(int64_t wanted, int64_t remaining, const KvSequence& kv, int64_t context) {
  return std::max<int64_t>(0,
                           std::min<int64_t>({wanted, remaining - 1, context - kv.num_tokens - 1}));
}

absl::StatusOr<std::vector<std::vector<int32_t>>> DraftTokens(const Model& model, KvCachePool& pool,
                                                              std::span<const DraftRequest> batch) {
  std::vector<std::vector<int32_t>> drafts(batch.size());
  std::vector<MtpInput> inputs;
  std::vector<size_t> which;  // the request of each input
  for (size_t i = 0; i < batch.size(); ++i) {
    const SpeculativeState& s = *batch[i].state;
    if (batch[i].max_drafts <= 0 || s.next.empty()) continue;
    inputs.push_back(MtpInput{s.hidden, s.next, batch[i].kv, false});
    which.push_back(i);
  }
  if (inputs.empty()) return drafts;
  DSV3_ASSIGN_OR_RETURN(ForwardResult out, MtpForward(model, inputs, pool));
  // A chain goes on from the MTP block's normed output of its last row, with its last draft.
  std::vector<std::vector<float>> chain_hidden;
  std::vector<size_t> chained;
  for (size_t j = 0; j < which.size(); ++j) {
    const DraftRequest& r = batch[which[j]];
    const int64_t rows = static_cast<int64_t>(r.state->next.size());
    r.state->hidden.clear();  // appended: `out` holds what the chain needs
    r.state->next.clear();
    std::span<const float> row = out.LastLogits(j);
    const bool constrained = r.sampler != nullptr && r.sampler->constrained();
    if (constrained) {
      // Among the tokens its grammar allows; a constrained sampler's state would have to
      // advance along a chain, so one draft only (none when the grammar allows nothing).
      std::vector<float> logits(row.begin(), row.end());
      absl::StatusOr<int32_t> d = r.sampler->Draft(logits);
      if (d.ok()) drafts[which[j]].push_back(*d);
      continue;
    }
    drafts[which[j]].push_back(Argmax(row));
    if (r.max_drafts > 1) {
      std::span<const float> h = out.HiddenRow(j, rows - 1);
      chain_hidden.emplace_back(h.begin(), h.end());
      chained.push_back(which[j]);
    }
  }
  while (!chained.empty()) {
    std::vector<MtpInput> step;
    for (size_t c = 0; c < chained.size(); ++c) {
      const DraftRequest& r = batch[chained[c]];
      step.push_back(MtpInput{chain_hidden[c], {&drafts[chained[c]].back(), 1}, r.kv, false});
    }
    DSV3_ASSIGN_OR_RETURN(ForwardResult more, MtpForward(model, step, pool));
    std::vector<std::vector<float>> next_hidden;
    std::vector<size_t> next_chained;
    for (size_t c = 0; c < chained.size(); ++c) {
      std::vector<int32_t>& d = drafts[chained[c]];
      d.push_back(Argmax(more.LastLogits(c)));
      if (static_cast<int64_t>(d.size()) < batch[chained[c]].max_drafts) {
        std::span<const float> h = more.HiddenRow(c, 0);
        next_hidden.emplace_back(h.begin(), h.end());
        next_chained.push_back(chained[c]);
      }
    }
    chain_hidden = std::move(next_hidden);
    chained = std::move(next_chained);
  }
  return drafts;
}

std::vector<int32_t> VerifyInput(int32_t last_token, std::span<const int32_t> drafts) {
  std::vector<int32_t> fed = {last_token};
  fed.insert(fed.end(), drafts.begin(), drafts.end());
  return fed;
}

absl::StatusOr<Verified> SampleVerified(RequestSampler& sampler, const ForwardResult& out,
                                        size_t index, std::span<const int32_t> fed,
                                        const std::function<bool(const SampledToken&)>& more) {
  Verified v;
  const int64_t rows = static_cast<int64_t>(fed.size());
  for (int64_t r = 0; r < rows; ++r) {
    // A pass of one row may have asked for its last logits only.
    std::span<const float> logits = rows > 1 ? out.LogitsRow(index, r) : out.LastLogits(index);
    DSV3_ASSIGN_OR_RETURN(SampledToken token, sampler.Sample(logits));
    v.emitted.push_back(token);
    if (!more(v.emitted.back())) {
      v.stopped = true;
      break;
    }
    if (r + 1 >= rows || v.emitted.back().token != fed[static_cast<size_t>(r + 1)]) break;
  }
  return v;
}

void AcceptVerified(const ForwardResult& out, size_t index, std::span<const int32_t> fed,
                    std::span<const SampledToken> emitted, KvSequence& kv,
                    SpeculativeState* state) {
  const int64_t kept = static_cast<int64_t>(emitted.size());
  const int64_t base = kv.num_tokens - static_cast<int64_t>(fed.size());
  // Rows base..base+kept-1 fed the tokens that stood; a rejected draft's row is overwritten.
  kv.num_tokens = base + kept;
  if (state == nullptr) return;
  state->drafted += static_cast<int64_t>(fed.size()) - 1;
  for (size_t j = 0; j + 1 < fed.size() && j < emitted.size(); ++j) {
    if (emitted[j].token != fed[j + 1]) break;
    ++state->accepted;
  }
  // Next MTP rows: (h_p, token p+1) for the positions just verified; the chain's rows past
  // them are overwritten. (Where no rows were appended this step, the stream ends earlier:
  // only a sequence that cannot go on drafts nothing, see DraftBudget.)
  kv.mtp_num_tokens = std::min(kv.mtp_num_tokens, base);
  const int64_t hidden = out.hidden_size;
  state->hidden.resize(static_cast<size_t>(kept * hidden));
  state->next.clear();
  for (int64_t r = 0; r < kept; ++r) {
    std::span<const float> h = out.HiddenRow(index, r);
    std::copy(h.begin(), h.end(), state->hidden.begin() + r * hidden);
    state->next.push_back(emitted[static_cast<size_t>(r)].token);
  }
}

}  // namespace dsv3::engine
