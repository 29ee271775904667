#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/banded_order.h"
#include "engine/kernels/logits.h"

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
  for (size_t i = 0; i < own; ++i) {
    if (!s.seen_[prompt[i]]) {
      s.seen_[prompt[i]] = 1;
      s.seen_tokens_.push_back(prompt[i]);
    }
  }
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
  // The row as given, or (when anything edits it) a copy: 0.5 MB at DeepSeek-V3's vocabulary,
  // in a buffer the thread keeps.
  std::span<const float> l = logits;
  const bool penalties =
      p.repetition_penalty != 1.0f ||
      ((p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) && !output_tokens_.empty());
  if (constraint_ != nullptr || !p.logit_bias.empty() || penalties) {
    thread_local std::vector<float> edited;
    edited.assign(logits.begin(), logits.end());
    if (constraint_ != nullptr) {
      DSV3_RETURN_IF_ERROR(
          constraint_->Mask(edited, max_output_tokens_ - static_cast<int64_t>(output_.size())));
    }
    for (const auto& [token, bias] : p.logit_bias) edited[token] += bias;
    if (p.repetition_penalty != 1.0f) {
      for (int32_t t : seen_tokens_) {
        edited[t] =
            edited[t] > 0 ? edited[t] / p.repetition_penalty : edited[t] * p.repetition_penalty;
      }
    }
    for (int32_t t : output_tokens_) {
      edited[t] -= p.frequency_penalty * output_counts_[t] + p.presence_penalty;
    }
    l = edited;
  }
  // log_softmax of the penalised logits.
  const float max_l = MaxOf(l.data(), vocab_size_);
  const double unit_mass = SumExp(l.data(), vocab_size_, max_l, 1.0f);
  const double log_z = max_l + std::log(unit_mass);
  auto logprob = [&](int32_t t) { return static_cast<float>(l[t] - log_z); };

  SampledToken out;
  out.token = p.greedy() ? static_cast<int32_t>(ArgmaxFirst(l.data(), vocab_size_))
                         : DrawToken(l, max_l, p, NextUniform(), unit_mass);
  if (constraint_ != nullptr) DSV3_RETURN_IF_ERROR(constraint_->Accept(out.token));
  out.logprob = logprob(out.token);
  if (p.top_logprobs > 0) {
    // The first of the descending order (masked tokens, -inf, last in id order).
    BandedOrder order(l, max_l, 1.0);
    for (int32_t i = 0; i < p.top_logprobs; ++i) {
      int32_t t = -1;
      if (i < order.size()) {
        t = order.At(i);
      } else {
        for (int32_t j = 0, masked = 0; j < vocab_size_; ++j) {
          if (!(l[j] >= -std::numeric_limits<float>::max()) && masked++ == i - order.size()) {
            t = j;
            break;
          }
        }
      }
      out.top_logprobs.push_back({t, logprob(t)});
    }
  }
  out.is_stop = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), out.token) !=
                p.stop_token_ids.end();
  Record(out.token);
  return out;
}

int32_t DrawToken(std::span<const float> l, float max_l, const SamplingParams& p, double u01,
                  double unit_mass) {
  const double temperature = p.temperature;
  BandedOrder order(l, max_l, temperature);
  // Every token masked (-inf): the order of a stable sort starts at token 0.
  if (order.size() == 0) return 0;
  // The kept tokens are always the first `keep` of the order.
  int64_t keep = order.size();
  if (p.top_k > 0) keep = std::min<int64_t>(keep, p.top_k);
  // Their probability mass: over the whole row with one vector pass while nothing is
  // truncated, else by a walk (whole bands by their mass).
  auto mass_of_kept = [&] {
    if (keep == order.size()) {
      const auto scale = static_cast<float>(1.0 / temperature);
      if (scale == 1.0f && unit_mass >= 0.0) return unit_mass;  // the same sum
      return SumExp(l.data(), static_cast<int64_t>(l.size()), max_l, scale);
    }
    double mass = 0.0;
    order.Walk(
        keep, [](double, double) { return false; }, &mass);
    return mass;
  };
  double cum = 0.0;
  if (p.top_p < 1.0f) {
    // The shortest prefix whose probability reaches top_p.
    const double target = p.top_p * mass_of_kept();
    const int64_t i = order.Walk(
        keep, [&](double after, double) { return after >= target; }, &cum);
    if (i < keep) keep = i + 1;
  }
  if (p.min_p > 0.0f) {
    // The first token has probability 1 (exp(0)): the threshold is min_p itself.
    const double floor = p.min_p;
    keep = std::max<int64_t>(1, order.Walk(
                                    keep, [&](double, double prob) { return prob < floor; }, &cum));
  }
  const double u = u01 * mass_of_kept();
  const int64_t i = order.Walk(
      keep, [&](double after, double) { return u < after; }, &cum);
  return order.At(std::min(i, keep - 1));  // keep - 1: u at the very top (rounding)
}

void RequestSampler::Record(int32_t token) {
  output_.push_back(token);
  if (output_counts_[token]++ == 0) output_tokens_.push_back(token);
  if (!seen_[token]) {
    seen_[token] = 1;
    seen_tokens_.push_back(token);
  }
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
  return static_cast<int32_t>(ArgmaxFirst(logits.data(), static_cast<int64_t>(logits.size())));
}

void RequestSampler::Replay(int32_t token) {
  if (!params_.greedy()) (void)NextUniform();
  if (token < 0 || token >= vocab_size_) return;
  // A refused token fails the constraint, and so the next Sample.
  if (constraint_ != nullptr) (void)constraint_->Accept(token);
  Record(token);
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
