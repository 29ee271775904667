#ifndef DSV3_ENGINE_SAMPLER_H_
#define DSV3_ENGINE_SAMPLER_H_

// Token selection for one request, deterministic for a given seed.
//
// Order of operations on a logits row (vLLM's semantics):
//   0. a structured-output constraint's mask (TokenConstraint), then logit_bias;
//   1. penalties: repetition (over prompt + output; positive logits divided, negative
//      multiplied), frequency (minus count in output x f), presence (minus p if in output);
//   2. logprobs (the requested top-n and the chosen token's) = log_softmax of the penalised
//      logits, before temperature and truncation;
//   3. temperature 0: greedy (argmax, lowest id on ties). Otherwise divide by the temperature,
//      keep the top_k, then the smallest set with cumulative probability >= top_p, then the
//      tokens with probability >= min_p x max probability; renormalise; draw with the
//      request's generator (xoshiro256** seeded by splitmix64 of the seed).

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/token_constraint.h"

namespace dsv3::engine {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  int32_t top_logprobs = 0;  // how many alternatives to report
  std::vector<int32_t> stop_token_ids;
  // Added to these tokens' logits first (OpenAI's logit_bias), sorted by token id.
  std::vector<std::pair<int32_t, float>> logit_bias;

  bool greedy() const { return temperature == 0.0f; }
};

absl::Status ValidateSamplingParams(const SamplingParams& params, int64_t vocab_size);

// Step 3 for temperature > 0: the token that a uniform draw u01 in [0, 1) picks from the
// penalised logits `l` (largest entry max_l) under p's temperature, top_k, top_p and min_p.
// The tokens are walked in descending order (ties by id) as the step describes, without
// sorting the whole vocabulary. `unit_mass`, when known (>= 0): sum of exp(l - max_l) over the
// row, what the logprobs' normaliser already summed; at temperature 1 it is the untruncated mass.
int32_t DrawToken(std::span<const float> l, float max_l, const SamplingParams& p, double u01,
                  double unit_mass = -1.0);

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top_logprobs;  // descending
  bool is_stop = false;
};

class RequestSampler {
 public:
  // The last `resumed_output` tokens of `prompt` are this request's own earlier output (a
  // request resumed elsewhere, e.g. migrated from a failed worker): they count as output
  // for the penalties, and the random stream continues after them (Replay).
  static absl::StatusOr<RequestSampler> Create(const SamplingParams& params, int64_t vocab_size,
                                               std::span<const int32_t> prompt,
                                               int64_t resumed_output = 0);

  // Structured output: every later token must satisfy `constraint` (its mask applies before
  // everything else, so logprobs are those of the allowed tokens), and at most
  // `max_output_tokens` tokens (the output so far included) will be generated. The output
  // so far (resumed tokens) is replayed into it.
  absl::Status Constrain(std::unique_ptr<TokenConstraint> constraint, int64_t max_output_tokens);

  // A draft of the next token (MTP) from `logits` under the constraint, if any: the
  // constraint's mask applied in place, the state unchanged. The argmax of what is left.
  absl::StatusOr<int32_t> Draft(std::span<float> logits);

  // Picks the next token from a logits row and appends it to the request's output history.
  absl::StatusOr<SampledToken> Sample(std::span<const float> logits);

  // Takes `token` as if this sampler had just sampled it (elsewhere: a prefill worker
  // sampled the first token): appends it to the history and advances the random stream by
  // the one draw a non-greedy Sample makes, so the next Sample continues the same stream.
  void Replay(int32_t token);

  const SamplingParams& params() const { return params_; }
  bool constrained() const { return constraint_ != nullptr; }
  const std::vector<int32_t>& output() const { return output_; }

 private:
  RequestSampler(const SamplingParams& params, int64_t vocab_size);
  uint64_t NextRandom();
  double NextUniform();  // [0, 1)
  // Appends a token to the output history (penalty counts and what has been seen).
  void Record(int32_t token);

  SamplingParams params_;
  int64_t vocab_size_;
  std::vector<int32_t> output_;
  std::vector<int32_t> output_counts_;
  std::vector<uint8_t> seen_;  // prompt or output
  // The distinct tokens of seen_ and of output_counts_, so that the penalties touch only
  // them and not the whole vocabulary.
  std::vector<int32_t> seen_tokens_;
  std::vector<int32_t> output_tokens_;
  // shared: a RequestSampler is copied by value in places; one request owns one constraint.
  std::shared_ptr<TokenConstraint> constraint_;
  int64_t max_output_tokens_ = 0;
  uint64_t state_[4];
};

// Samples row i of `logits` ([samplers.size(), vocab]) with samplers[i]: a step's batch.
absl::StatusOr<std::vector<SampledToken>> SampleBatch(std::span<RequestSampler* const> samplers,
                                                      std::span<const float> logits);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SAMPLER_H_
