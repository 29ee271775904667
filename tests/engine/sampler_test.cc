#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace dsv3::engine {
namespace {

std::vector<float> Logits(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<int32_t> Draw(const SamplingParams& p, const std::vector<float>& logits, int n) {
  auto s = RequestSampler::Create(p, static_cast<int64_t>(logits.size()), {});
  EXPECT_TRUE(s.ok()) << s.status();
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s->Sample(logits)->token);
  return out;
}

TEST(SamplerTest, GreedyIsArgmax) {
  SamplingParams p;
  EXPECT_EQ(Draw(p, {0.1f, 2.0f, -1.0f, 1.9f}, 3), (std::vector<int32_t>{1, 1, 1}));
}

TEST(SamplerTest, SeedDeterminesTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  const auto logits = Logits({0.25, 0.25, 0.25, 0.25});
  EXPECT_EQ(Draw(p, logits, 64), Draw(p, logits, 64));
  SamplingParams q = p;
  q.seed = 43;
  EXPECT_NE(Draw(p, logits, 64), Draw(q, logits, 64));
}

TEST(SamplerTest, FrequenciesFollowTheDistribution) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  const auto logits = Logits({0.5, 0.3, 0.2});
  std::vector<int> count(3);
  const int n = 20000;
  for (int32_t t : Draw(p, logits, n)) ++count[t];
  EXPECT_NEAR(count[0] / double(n), 0.5, 0.015);
  EXPECT_NEAR(count[1] / double(n), 0.3, 0.015);
  EXPECT_NEAR(count[2] / double(n), 0.2, 0.015);
  // Temperature 0.5 squares the odds: p ~ (25, 9, 4) / 38.
  p.temperature = 0.5f;
  count.assign(3, 0);
  for (int32_t t : Draw(p, logits, n)) ++count[t];
  EXPECT_NEAR(count[0] / double(n), 25.0 / 38, 0.015);
}

TEST(SamplerTest, Truncations) {
  const auto logits = Logits({0.4, 0.3, 0.2, 0.1});
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  for (int32_t t : Draw(p, logits, 500)) EXPECT_LT(t, 2);
  p.top_k = 0;
  p.top_p = 0.65f;  // 0.4 + 0.3 reaches it
  for (int32_t t : Draw(p, logits, 500)) EXPECT_LT(t, 2);
  p.top_p = 1.0f;
  p.min_p = 0.6f;  // keeps p >= 0.24
  for (int32_t t : Draw(p, logits, 500)) EXPECT_LT(t, 2);
  p.min_p = 0.0f;
  std::vector<int> count(4);
  for (int32_t t : Draw(p, logits, 4000)) ++count[t];
  EXPECT_GT(count[3], 0);  // nothing truncated without the options
}

TEST(SamplerTest, Penalties) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.0f};
  SamplingParams p;
  p.repetition_penalty = 1.2f;  // prompt contains token 0: 2.0 / 1.2 < 1.9
  auto s = RequestSampler::Create(p, 3, std::vector<int32_t>{0});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->Sample(logits)->token, 1);
  SamplingParams f;
  f.frequency_penalty = 1.0f;  // output history, not the prompt
  auto fs = RequestSampler::Create(f, 3, std::vector<int32_t>{1});
  EXPECT_EQ(fs->Sample(logits)->token, 0);
  EXPECT_EQ(fs->Sample(logits)->token, 1);  // 0 now has 2.0 - 1 = 1.0
  SamplingParams pr;
  pr.presence_penalty = 0.5f;
  auto ps = RequestSampler::Create(pr, 3, {});
  EXPECT_EQ(ps->Sample(logits)->token, 0);
  EXPECT_EQ(ps->Sample(logits)->token, 1);
}

// A request resumed elsewhere with its output so far appended to the prompt continues as
// if nothing had happened: the same random stream, the same penalties.
TEST(SamplerTest, ResumedOutputContinuesTheStream) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 11;
  p.frequency_penalty = 0.7f;
  const auto logits = Logits({0.3, 0.3, 0.2, 0.2});
  const std::vector<int32_t> prompt = {3, 1};
  auto whole = RequestSampler::Create(p, 4, prompt);
  ASSERT_TRUE(whole.ok());
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(whole->Sample(logits)->token);
  for (int split : {1, 17, 39}) {
    std::vector<int32_t> resumed_prompt = prompt;
    resumed_prompt.insert(resumed_prompt.end(), tokens.begin(), tokens.begin() + split);
    auto resumed = RequestSampler::Create(p, 4, resumed_prompt, split);
    ASSERT_TRUE(resumed.ok());
    for (int i = split; i < 40; ++i) {
      EXPECT_EQ(resumed->Sample(logits)->token, tokens[i]) << "split " << split << " at " << i;
    }
  }
  // Without the resumed count the penalties and the stream differ.
  std::vector<int32_t> resumed_prompt = prompt;
  resumed_prompt.insert(resumed_prompt.end(), tokens.begin(), tokens.begin() + 17);
  auto fresh = RequestSampler::Create(p, 4, resumed_prompt);
  std::vector<int32_t> rest;
  for (int i = 17; i < 40; ++i) rest.push_back(fresh->Sample(logits)->token);
  EXPECT_NE(rest, std::vector<int32_t>(tokens.begin() + 17, tokens.end()));
  EXPECT_FALSE(RequestSampler::Create(p, 4, prompt, 3).ok());
  EXPECT_FALSE(RequestSampler::Create(p, 4, prompt, -1).ok());
}

TEST(SamplerTest, LogprobsAndStops) {
  SamplingParams p;
  p.top_logprobs = 2;
  p.stop_token_ids = {1};
  const auto logits = Logits({0.6, 0.3, 0.1});
  auto s = RequestSampler::Create(p, 3, {});
  auto t = s->Sample(logits);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, 0);
  EXPECT_NEAR(t->logprob, std::log(0.6), 1e-6);
  ASSERT_EQ(t->top_logprobs.size(), 2u);
  EXPECT_EQ(t->top_logprobs[1].first, 1);
  EXPECT_NEAR(t->top_logprobs[1].second, std::log(0.3), 1e-6);
  EXPECT_FALSE(t->is_stop);
  auto stop = s->Sample(Logits({0.1, 0.8, 0.1}));
  EXPECT_TRUE(stop->is_stop);
}

TEST(SamplerTest, RejectsBadInput) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_FALSE(RequestSampler::Create(p, 3, {}).ok());
  p = {};
  p.top_p = 0;
  EXPECT_FALSE(RequestSampler::Create(p, 3, {}).ok());
  p = {};
  p.stop_token_ids = {3};
  EXPECT_FALSE(RequestSampler::Create(p, 3, {}).ok());
  p = {};
  EXPECT_FALSE(RequestSampler::Create(p, 3, std::vector<int32_t>{5}).ok());
  auto s = RequestSampler::Create(p, 3, {});
  EXPECT_FALSE(s->Sample(std::vector<float>{1, 2}).ok());
}

// A constraint that allows even tokens only, records what it was told, and (as the real
// one) fails every later call once a token broke it.
class EvenTokens : public TokenConstraint {
 public:
  explicit EvenTokens(std::vector<int32_t>* accepted) : accepted_(accepted) {}
  absl::Status Mask(std::span<float> logits, int64_t tokens_left) override {
    if (!failure_.ok()) return failure_;
    last_tokens_left = tokens_left;
    for (size_t t = 1; t < logits.size(); t += 2) logits[t] = -INFINITY;
    return absl::OkStatus();
  }
  absl::Status Accept(int32_t token) override {
    accepted_->push_back(token);
    if (token % 2 != 0) failure_ = absl::InvalidArgumentError("odd");
    return failure_;
  }
  int64_t last_tokens_left = -1;

 private:
  std::vector<int32_t>* accepted_;
  absl::Status failure_;
};

TEST(SamplerTest, AConstraintMasksFirstAndSeesEveryToken) {
  for (float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 3;
    // The prompt's last two tokens are earlier output (a resumed request): replayed.
    const std::vector<int32_t> prompt = {5, 2, 4};
    auto s = RequestSampler::Create(p, 6, prompt, /*resumed_output=*/2);
    ASSERT_TRUE(s.ok());
    std::vector<int32_t> accepted;
    auto c = std::make_unique<EvenTokens>(&accepted);
    EvenTokens* constraint = c.get();
    ASSERT_TRUE(s->Constrain(std::move(c), /*max_output_tokens=*/10).ok());
    EXPECT_EQ(accepted, (std::vector<int32_t>{2, 4}));
    // The odd tokens are the likeliest: never drawn, and not in the logprobs.
    const std::vector<float> logits = {0.0f, 5.0f, 0.1f, 5.0f, 0.2f, 5.0f};
    for (int i = 0; i < 20; ++i) {
      auto t = s->Sample(logits);
      ASSERT_TRUE(t.ok());
      EXPECT_EQ(t->token % 2, 0);
    }
    EXPECT_EQ(accepted.size(), 22u);
    EXPECT_EQ(constraint->last_tokens_left, 10 - 21);  // 2 resumed + 19 sampled before it
    // A draft is taken under the mask and changes nothing.
    std::vector<float> draft_logits = logits;
    EXPECT_EQ(*s->Draft(draft_logits), 4);
    EXPECT_EQ(accepted.size(), 22u);
    // A replayed token the constraint refuses fails the next step.
    s->Replay(3);
    EXPECT_FALSE(s->Sample(logits).ok());
  }
}

// The top logprobs are the first tokens by logit, ties by id, masked tokens last; each with
// its log_softmax.
TEST(SamplerTest, TopLogprobsFollowTheOrder) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(3001);
  for (float& v : logits) v = std::round(normal(rng) * 2.0f) / 2.0f;  // ties
  auto reference = [](const std::vector<float>& l, int n) {
    std::vector<int32_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    order.resize(static_cast<size_t>(n));
    return order;
  };
  SamplingParams p;
  p.top_logprobs = 25;
  auto s = RequestSampler::Create(p, 3001, {});
  auto t = s->Sample(logits);
  ASSERT_TRUE(t.ok());
  double z = 0.0;
  for (float v : logits) z += std::exp(static_cast<double>(v));
  const std::vector<int32_t> want = reference(logits, 25);
  ASSERT_EQ(t->top_logprobs.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(t->top_logprobs[i].first, want[i]) << i;
    EXPECT_NEAR(t->top_logprobs[i].second, logits[want[i]] - std::log(z), 1e-5) << i;
  }
  // More alternatives than allowed tokens: the masked ones follow, by id.
  SamplingParams q;
  q.top_logprobs = 6;
  auto c = RequestSampler::Create(q, 6, {});
  std::vector<int32_t> accepted;
  ASSERT_TRUE(c->Constrain(std::make_unique<EvenTokens>(&accepted), 10).ok());
  auto u = c->Sample(std::vector<float>{0.0f, 5.0f, 0.2f, 5.0f, 0.1f, 5.0f});
  ASSERT_TRUE(u.ok());
  std::vector<int32_t> ids;
  for (const auto& [id, lp] : u->top_logprobs) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 4, 0, 1, 3, 5}));
  EXPECT_TRUE(std::isinf(u->top_logprobs[3].second));
}

TEST(SamplerTest, LogitBiasComesBeforeEverything) {
  SamplingParams p;
  p.logit_bias = {{0, 100.0f}};
  EXPECT_EQ(Draw(p, {0.1f, 2.0f, -1.0f, 1.9f}, 2), (std::vector<int32_t>{0, 0}));
  p.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(Draw(p, {0.1f, 2.0f, -1.0f, 1.9f}, 1), (std::vector<int32_t>{3}));
  p.logit_bias = {{9, 1.0f}};
  EXPECT_FALSE(RequestSampler::Create(p, 4, {}).ok());
  p.logit_bias = {{1, 101.0f}};
  EXPECT_FALSE(RequestSampler::Create(p, 4, {}).ok());
}

// The draw as step 3 defines it, written plainly: the whole vocabulary sorted (`order`, a
// stable sort by descending logit), truncated, walked. prob[i]: exp((l - max) / T) of order[i].
int32_t ReferenceDraw(const std::vector<int32_t>& order, const std::vector<double>& prob,
                      int64_t finite, const SamplingParams& p, double u01) {
  size_t keep = static_cast<size_t>(finite);
  if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
  if (p.top_p < 1.0f) {
    const double total = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
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
  const double u = u01 * std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (u < cum) return order[i];
  }
  return order[keep - 1];
}

// DrawToken walks the order a band at a time, splitting big bands; the token for each u is
// the one the plain definition gives, over rows with ties and masked tokens, from a spread
// that puts thousands of tokens in one band (a model with random weights) to one that puts
// a few in each.
TEST(SamplerTest, DrawTokenIsTheSortedWalk) {
  std::mt19937 rng(9);
  int compared = 0;
  for (float spread : {0.05f, 0.5f, 3.0f, 20.0f}) {
    std::normal_distribution<float> normal(0.0f, spread);
    std::vector<float> l(20011);
    for (float& v : l) v = std::round(normal(rng) * 64.0f) / 64.0f;  // ties
    for (size_t i = 5; i < l.size(); i += 11) l[i] = -INFINITY;
    for (int k = 0; k < 6; ++k) l[static_cast<size_t>(k * 397)] = 8.0f * spread - k;
    const float max_l = *std::max_element(l.begin(), l.end());
    std::vector<int32_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    const int64_t finite =
        std::count_if(l.begin(), l.end(), [](float v) { return !std::isinf(v); });
    for (float temperature : {0.3f, 1.0f, 2.5f}) {
      std::vector<double> prob(static_cast<size_t>(finite));
      for (int64_t i = 0; i < finite; ++i) {
        prob[i] = std::exp((static_cast<double>(l[order[i]]) - max_l) / temperature);
      }
      for (int32_t top_k : {0, 1, 40}) {
        for (float top_p : {1.0f, 0.9f, 0.3f}) {
          for (float min_p : {0.0f, 0.05f}) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_k = top_k;
            p.top_p = top_p;
            p.min_p = min_p;
            for (int i = 0; i < 64; ++i) {
              const double u = (i + 0.37) / 64;
              ASSERT_EQ(DrawToken(l, max_l, p, u), ReferenceDraw(order, prob, finite, p, u))
                  << "spread " << spread << " T " << temperature << " top_k " << top_k << " top_p "
                  << top_p << " min_p " << min_p << " u " << u;
              ++compared;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(compared, 4 * 3 * 3 * 3 * 2 * 64);
  // Every token masked: token 0, as the stable order starts.
  const std::vector<float> masked(10, -INFINITY);
  SamplingParams p;
  p.temperature = 1.0f;
  EXPECT_EQ(DrawToken(masked, -INFINITY, p, 0.5), 0);
}

TEST(SamplerTest, BatchUsesEachRequestsOwnState) {
  SamplingParams greedy;
  SamplingParams hot;
  hot.temperature = 1.0f;
  hot.seed = 1;
  auto a = RequestSampler::Create(greedy, 2, {});
  auto b = RequestSampler::Create(hot, 2, {});
  std::vector<RequestSampler*> batch = {&*a, &*b};
  const std::vector<float> logits = {5, 0, 0, 5};
  auto out = SampleBatch(batch, logits);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].token, 0);
}

}  // namespace
}  // namespace dsv3::engine
