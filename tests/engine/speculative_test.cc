// The speculative steps both the generator and the decode worker run: batched drafts equal
// drafts taken one sequence at a time, the verification keeps exactly the drafts that stood,
// and the roll-back leaves the KV and the MTP rows where the next step expects them.

#include "engine/speculative.h"

#include <gtest/gtest.h>

#include "engine/model.h"
#include "tests/engine/golden_data.h"

namespace dsv3::engine {
namespace {

// One sequence's state after its prompt went through the main model: the MTP rows
// (h_i, t_{i+1}) with `first` as the token after the prompt.
struct Prefilled {
  KvSequence kv;
  SpeculativeState spec;
};

Prefilled Prefill(const Model& model, KvCachePool& pool, const std::vector<int32_t>& prompt,
                  int32_t first) {
  Prefilled p;
  ForwardOptions with_hidden;
  with_hidden.return_hidden = true;
  SequenceInput in{prompt, &p.kv, false};
  absl::StatusOr<ForwardResult> out = model.Forward({&in, 1}, pool, with_hidden);
  EXPECT_TRUE(out.ok()) << out.status();
  p.spec.hidden = out->hidden;
  p.spec.next.assign(prompt.begin() + 1, prompt.end());
  p.spec.next.push_back(first);
  return p;
}

TEST(SpeculativeTest, BatchedDraftChainsEqualOneSequenceAtATime) {
  const testing::GoldenCase g = testing::LoadGolden("tiny-v3-mtp");
  auto model = Model::Load(g.dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> a = g.prompts[0].prompt;
  const std::vector<int32_t> b = g.prompts[1].prompt;
  // Alone, each in a pool of its own.
  std::vector<std::vector<int32_t>> alone;
  for (const auto& [prompt, k] : {std::pair{a, int64_t{3}}, std::pair{b, int64_t{2}}}) {
    auto pool = KvCachePool::Create((*model)->KvLayout(8, 16));
    ASSERT_TRUE(pool.ok());
    Prefilled p = Prefill(**model, **pool, prompt, 7);
    const DraftRequest r{&p.kv, &p.spec, k};
    auto d = DraftTokens(**model, **pool, {&r, 1});
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_EQ((*d)[0].size(), static_cast<size_t>(k));
    // The rows were appended (and the chain's k-1 more), then cleared from the state.
    EXPECT_EQ(p.kv.mtp_num_tokens, static_cast<int64_t>(prompt.size()) + k - 1);
    EXPECT_TRUE(p.spec.next.empty());
    EXPECT_TRUE(p.spec.hidden.empty());
    alone.push_back((*d)[0]);
  }
  // Together, with a third sequence that may not draft (nothing runs for it).
  auto pool = KvCachePool::Create((*model)->KvLayout(16, 16));
  ASSERT_TRUE(pool.ok());
  Prefilled pa = Prefill(**model, **pool, a, 7);
  Prefilled pb = Prefill(**model, **pool, b, 7);
  Prefilled pc = Prefill(**model, **pool, b, 7);
  const std::vector<DraftRequest> batch = {
      {&pa.kv, &pa.spec, 3}, {&pc.kv, &pc.spec, 0}, {&pb.kv, &pb.spec, 2}};
  auto d = DraftTokens(**model, **pool, batch);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)[0], alone[0]);
  EXPECT_TRUE((*d)[1].empty());
  EXPECT_EQ((*d)[2], alone[1]);
  EXPECT_EQ(pc.kv.mtp_num_tokens, 0);
  EXPECT_EQ(pc.spec.next.size(), b.size());  // kept for a later step
}

TEST(SpeculativeTest, DraftBudgetLeavesRoomToEmitAndToStore) {
  KvSequence kv;
  kv.num_tokens = 10;
  EXPECT_EQ(DraftBudget(3, 100, kv, 100), 3);
  EXPECT_EQ(DraftBudget(3, 3, kv, 100), 2);   // the next token and two drafts
  EXPECT_EQ(DraftBudget(3, 1, kv, 100), 0);   // only the next token may still be emitted
  EXPECT_EQ(DraftBudget(3, 100, kv, 13), 2);  // rows 10, 11, 12 fit below 13
  EXPECT_EQ(DraftBudget(3, 100, kv, 11), 0);
}

// A result of one sequence's verify pass: row r's logits peak at peaks[r]; hidden row r is
// filled with r.
ForwardResult VerifyPass(const std::vector<int32_t>& peaks, int64_t vocab, int64_t hidden) {
  ForwardResult out;
  out.vocab_size = vocab;
  out.hidden_size = hidden;
  out.logits_begin = {0};
  out.logits_count = {static_cast<int64_t>(peaks.size())};
  out.token_begin = {0};
  for (size_t r = 0; r < peaks.size(); ++r) {
    for (int64_t v = 0; v < vocab; ++v) out.logits.push_back(v == peaks[r] ? 5.f : 0.f);
    for (int64_t h = 0; h < hidden; ++h) out.hidden.push_back(static_cast<float>(r));
  }
  return out;
}

std::vector<int32_t> Tokens(const Verified& v) {
  std::vector<int32_t> t;
  for (const SampledToken& s : v.emitted) t.push_back(s.token);
  return t;
}

TEST(SpeculativeTest, VerificationKeepsTheDraftsThatStoodAndRollsBack) {
  auto sampler = RequestSampler::Create(SamplingParams{}, 16, {});
  ASSERT_TRUE(sampler.ok());
  auto always = [](const SampledToken&) { return true; };
  const std::vector<int32_t> fed = {1, 4, 5, 6};  // last token, then drafts 4 5 6
  {
    // Drafts 4 and 5 stand, 6 does not (the model says 9): three tokens, the last the model's.
    const ForwardResult out = VerifyPass({4, 5, 9, 2}, 16, 2);
    auto v = SampleVerified(*sampler, out, 0, fed, always);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(Tokens(*v), (std::vector<int32_t>{4, 5, 9}));
    EXPECT_FALSE(v->stopped);
    KvSequence kv;
    kv.num_tokens = 20 + 4;  // the pass began at 20
    kv.mtp_num_tokens = 22;  // rows to 20, and the chain's 2
    SpeculativeState s;
    AcceptVerified(out, 0, fed, v->emitted, kv, &s);
    EXPECT_EQ(kv.num_tokens, 23);      // rows 20..22 fed 1, 4, 5: they stood
    EXPECT_EQ(kv.mtp_num_tokens, 20);  // the chain's rows are dropped
    EXPECT_EQ(s.drafted, 3);
    EXPECT_EQ(s.accepted, 2);
    EXPECT_EQ(s.next, (std::vector<int32_t>{4, 5, 9}));
    EXPECT_EQ(s.hidden, (std::vector<float>{0, 0, 1, 1, 2, 2}));
  }
  {
    // Every draft stands: four tokens.
    const ForwardResult out = VerifyPass({4, 5, 6, 3}, 16, 2);
    auto v = SampleVerified(*sampler, out, 0, fed, always);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(Tokens(*v), (std::vector<int32_t>{4, 5, 6, 3}));
  }
  {
    // Generation ends at the second token although the drafts went on standing.
    const ForwardResult out = VerifyPass({4, 5, 6, 3}, 16, 2);
    int calls = 0;
    auto v =
        SampleVerified(*sampler, out, 0, fed, [&](const SampledToken&) { return ++calls < 2; });
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(Tokens(*v), (std::vector<int32_t>{4, 5}));
    EXPECT_TRUE(v->stopped);
  }
  {
    // No draft: one row, one token; a sequence that did not draft this step (no MTP rows
    // appended) keeps its MTP stream where it ended.
    const ForwardResult out = VerifyPass({8}, 16, 2);
    const std::vector<int32_t> one = {1};
    auto v = SampleVerified(*sampler, out, 0, one, always);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(Tokens(*v), (std::vector<int32_t>{8}));
    KvSequence kv;
    kv.num_tokens = 31;
    kv.mtp_num_tokens = 28;
    SpeculativeState s;
    AcceptVerified(out, 0, one, v->emitted, kv, &s);
    EXPECT_EQ(kv.num_tokens, 31);
    EXPECT_EQ(kv.mtp_num_tokens, 28);
    EXPECT_EQ(s.drafted, 0);
  }
}

}  // namespace
}  // namespace dsv3::engine
