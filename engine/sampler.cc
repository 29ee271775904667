#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::engine {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab_size) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0 (0 disables it)");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return absl::InvalidArgumentError("repetition_penalty must be > 0");
  }
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) {
    return absl::InvalidArgumentError("presence/frequency penalties must be finite");
  }
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0 || token >= vocab_size || !(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: token ", token,
                                                     " must be in [0, ", vocab_size,
                                                     ") with a bias in [-100, 100]"));
    }
  }
  if (p.top_logprobs < 0 || p.top_logprobs > vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_logprobs must be in [0, ", vocab_size, "]"));
  }
  for (int32_t t : p.stop_token_ids) {
    if (t < 0 || t >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("stop token id ", t, " out of range"));
    }
  }
  return absl::OkStatus();
}

RequestSampler::RequestSampler(const SamplingParams& params, int64_t vocab_size)
    : params_(params),
      vocab_size_(vocab_size),
      output_counts_(static_cast<size_t>(vocab_size), 0),
      seen_(static_cast<size_t>(vocab_size), 0) {
  uint64_t s = params.seed;
  for (uint64_t& word : state_) word = SplitMix64(s);
}

absl::StatusOr<RequestSampler> RequestSampler::Create(const SamplingParams& params,
                                                      int64_t vocab_size,
                                                      std::span<const int32_t> prompt,
                                                      int64_t resumed_output) {
  DSV3_RETURN_IF_ERROR(ValidateSamplingParams(params, vocab_size));
  if (resumed_output < 0 || resumed_output > static_cast<int64_t>(prompt.size())) {
    return absl::InvalidArgumentError(absl::StrCat("resumed output of ", resumed_output,
                                                   " tokens in a prompt of ", prompt.size()));
  }
  RequestSampler s(params, vocab_size);
  for (int32_t t : prompt) {
    if (t < 0 || t >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", t, " out of range"));
    }
  }
  const size_t own = prompt.size() - static_cast<size_t>(resumed_output);
  for (size_t i = 0; i < own; ++i) s.seen_[prompt[i]] = 1;
  for (size_t i = own; i < prompt.size(); ++i) s.Replay(prompt[i]);
  return s;
}

uint64_t RequestSampler::NextRandom() {
  const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = Rotl(state_[3], 45);
  return result;
}

double RequestSampler::NextUniform() { return static_cast<double>(NextRandom() >> 11) * 0x1.0p-53; }

absl::StatusOr<SampledToken> RequestSampler::Sample(std::span<const float> logits) {
  if (static_cast<int64_t>(logits.size()) != vocab_size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits row has ", logits.size(), " entries, vocab is ", vocab_size_));
  }
  const SamplingParams& p = params_;
  std::vector<float> l(logits.begin(), logits.end());
  if (constraint_ != nullptr) {
    DSV3_RETURN_IF_ERROR(
        constraint_->Mask(l, max_output_tokens_ - static_cast<int64_t>(output_.size())));
  }
  for (const auto& [token, bias] : p.logit_bias) l[token] += bias;
  for (int64_t t = 0; t < vocab_size_; ++t) {
    if (p.repetition_penalty != 1.0f && seen_[t]) {
      l[t] = l[t] > 0 ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
    }
    const int32_t count = output_counts_[t];
    if (count > 0) l[t] -= p.frequency_penalty * count + p.presence_penalty;
  }
  // log_softmax of the penalised logits.
  const float max_l = *std::max_element(l.begin(), l.end());
  double sum = 0.0;
  for (float v : l) sum += std::exp(static_cast<double>(v) - max_l);
  const double log_z = max_l + std::log(sum);
  auto logprob = [&](int32_t t) { return static_cast<float>(l[t] - log_z); };

  SampledToken out;
  if (p.greedy()) {
    out.token = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  } else {
    std::vector<int32_t> order(static_cast<size_t>(vocab_size_));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    size_t keep = order.size();
    if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
    // Tokens a constraint masked (-inf, sorted last) are never drawn.
    while (keep > 1 && std::isinf(l[order[keep - 1]]) && l[order[keep - 1]] < 0) --keep;
    std::vector<double> prob(keep);
    double total = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      prob[i] = std::exp((static_cast<double>(l[order[i]]) - max_l) / p.temperature);
      total += prob[i];
    }
    if (p.top_p < 1.0f) {
      double cum = 0.0;
      size_t i = 0;
      while (i < keep) {
        cum += prob[i++] / total;
        if (cum >= p.top_p) break;
      }
      keep = i;
    }
    if (p.min_p > 0.0f) {
      size_t i = 1;
      while (i < keep && prob[i] >= p.min_p * prob[0]) ++i;
      keep = i;
    }
    total = 0.0;
    for (size_t i = 0; i < keep; ++i) total += prob[i];
    const double u = NextUniform() * total;
    double cum = 0.0;
    out.token = order[keep - 1];
    for (size_t i = 0; i < keep; ++i) {
      cum += prob[i];
      if (u < cum) {
        out.token = order[i];
        break;
      }
    }
  }
  if (constraint_ != nullptr) DSV3_RETURN_IF_ERROR(constraint_->Accept(out.token));
  out.logprob = logprob(out.token);
  if (p.top_logprobs > 0) {
    std::vector<int32_t> order(static_cast<size_t>(vocab_size_));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + p.top_logprobs, order.end(),
                      [&](int32_t a, int32_t b) { return l[a] != l[b] ? l[a] > l[b] : a < b; });
    for (int32_t i = 0; i < p.top_logprobs; ++i)
      out.top_logprobs.push_back({order[i], logprob(order[i])});
  }
  out.is_stop = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), out.token) !=
                p.stop_token_ids.end();
  output_.push_back(out.token);
  ++output_counts_[out.token];
  seen_[out.token] = 1;
  return out;
}

absl::Status RequestSampler::Constrain(std::unique_ptr<TokenConstraint> constraint,
                                       int64_t max_output_tokens) {
  constraint_ = std::move(constraint);
  max_output_tokens_ = max_output_tokens;
  for (int32_t t : output_) DSV3_RETURN_IF_ERROR(constraint_->Accept(t));
  return absl::OkStatus();
}

absl::StatusOr<int32_t> RequestSampler::Draft(std::span<float> logits) {
  if (constraint_ != nullptr) {
    DSV3_RETURN_IF_ERROR(
        constraint_->Mask(logits, max_output_tokens_ - static_cast<int64_t>(output_.size())));
  }
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void RequestSampler::Replay(int32_t token) {
  if (!params_.greedy()) (void)NextUniform();
  if (token < 0 || token >= vocab_size_) return;
  // A refused token fails the constraint, and so the next Sample.
  if (constraint_ != nullptr) (void)constraint_->Accept(token);
  output_.push_back(token);
  ++output_counts_[token];
  seen_[token] = 1;
}

absl::StatusOr<std::vector<SampledToken>> SampleBatch(std::span<RequestSampler* const> samplers,
                                                      std::span<const float> logits) {
  if (samplers.empty() || logits.size() % samplers.size() != 0) {
    return absl::InvalidArgumentError("logits rows do not match the samplers");
  }
  const size_t vocab = logits.size() / samplers.size();
  std::vector<SampledToken> out;
  for (size_t i = 0; i < samplers.size(); ++i) {
    DSV3_ASSIGN_OR_RETURN(SampledToken t, samplers[i]->Sample(logits.subspan(i * vocab, vocab)));
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace dsv3::engine
