#ifndef DSV3_ENGINE_SPECULATIVE_H_
#define DSV3_ENGINE_SPECULATIVE_H_

// Speculative decoding with the MTP layer (mtp.h), as the steps every loop that speculates
// runs: the in-process generator (generator.h) and the decode worker's batched scheduler.
//
//   1. DraftTokens: each sequence's pending MTP rows (the main model's hidden state h_p of
//      the positions it just verified, with token p+1) go through the MTP layer in one
//      batched call; its prediction is draft 1; draft j+1 feeds the MTP block's own normed
//      output back as h (a chain, batched over the sequences still drafting).
//   2. The caller runs the main model over [last token, d_1..d_k] with all logits and
//      hidden states (one Forward for the whole batch, beside whatever else it computes).
//   3. SampleVerified: each row is sampled with the request's sampler; a draft stands while
//      it equals the sample (exact-match verification: the output distribution is the main
//      model's, and greedy speculative output equals greedy plain output).
//   4. AcceptVerified: the KV of the rows that stood is kept (num_tokens rolled back: a
//      rejected row is overwritten later), the MTP stream rolls back to where the verified
//      rows begin, and those rows become the next pending MTP rows.

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/sampler.h"

namespace dsv3::engine {

// What a speculating sequence carries between steps.
struct SpeculativeState {
  std::vector<float> hidden;  // [rows, hidden_size]: h_p of the positions not yet in MTP's KV
  std::vector<int32_t> next;  // [rows]: token p+1 of each
  int64_t drafted = 0;        // draft tokens proposed so far
  int64_t accepted = 0;       // of which equalled the token sampled at their row
};

struct DraftRequest {
  KvSequence* kv = nullptr;
  SpeculativeState* state = nullptr;
  int64_t max_drafts = 0;  // 0: nothing runs for this sequence (see DraftBudget)
  // When constrained (structured output), the single draft is the argmax among the tokens
  // its grammar allows next (what the verification would refuse is no draft).
  RequestSampler* sampler = nullptr;
};

// Most drafts a sequence may verify next: `wanted`, but none whose token could not be
// emitted (`remaining` tokens left to generate, the next one included) or whose row could
// not be stored (the verify pass feeds 1 + k rows at kv.num_tokens, below `context`).
int64_t DraftBudget(int64_t wanted, int64_t remaining, const KvSequence& kv, int64_t context);

// Appends the pending MTP rows of every request with max_drafts > 0 and rows to append, then
// chains drafts; returns each request's drafts (empty where none). The rows appended are
// cleared from the state. On an error the KV of the MTP stream may hold rows of this call;
// AcceptVerified's roll-back makes them harmless.
absl::StatusOr<std::vector<std::vector<int32_t>>> DraftTokens(const Model& model, KvCachePool& pool,
                                                              std::span<const DraftRequest> batch);

// The main model's input for a sequence's verify pass: its last emitted token, then drafts.
std::vector<int32_t> VerifyInput(int32_t last_token, std::span<const int32_t> drafts);

struct Verified {
  std::vector<SampledToken> emitted;  // the drafts that stood (as sampled) and one more
  bool stopped = false;               // `more` refused to go on after the last of them
};

// Samples the verify pass's rows of sequence `index` of `out` (fed: its VerifyInput) in
// order: after each sample, `more(token)` says whether generation may go on (false: the
// token is the last one); a row after a draft counts only while that draft equals the sample.
absl::StatusOr<Verified> SampleVerified(RequestSampler& sampler, const ForwardResult& out,
                                        size_t index, std::span<const int32_t> fed,
                                        const std::function<bool(const SampledToken&)>& more);

// Keeps the verified rows of sequence `index` (kv.num_tokens = where the pass began +
// emitted.size()), counts its drafts, and, with `state` (speculating), sets the next pending
// MTP rows: h of those rows (out must hold hidden states) with the tokens emitted after them.
void AcceptVerified(const ForwardResult& out, size_t index, std::span<const int32_t> fed,
                    std::span<const SampledToken> emitted, KvSequence& kv, SpeculativeState* state);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SPECULATIVE_H_
