// Plain and speculative (MTP) generation, and the engine's input validation.

#include "engine/generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/model.h"
#include "engine/synthetic_checkpoint.h"
#include "tests/engine/golden_data.h"

namespace dsv3::engine {
namespace {

TEST(GeneratorTest, PlainGreedyMatchesGoldenAndSpeculativeMatchesPlain) {
  const testing::GoldenCase g = testing::LoadGolden("tiny-v3-mtp");
  auto model = Model::Load(g.dir);
  ASSERT_TRUE(model.ok()) << model.status();
  for (const auto& p : g.prompts) {
    GenerateOptions plain;
    plain.max_new_tokens = 8;
    auto base = Generate(**model, p.prompt, plain);
    ASSERT_TRUE(base.ok()) << base.status();
    EXPECT_EQ(base->token_ids(), p.greedy_tokens);
    for (int k : {1, 2, 3}) {
      GenerateOptions spec = plain;
      spec.speculative_mtp = true;
      spec.num_draft_tokens = k;
      auto out = Generate(**model, p.prompt, spec);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(out->token_ids(), p.greedy_tokens) << "k=" << k;
      EXPECT_GT(out->drafted, 0);
      EXPECT_LE(out->accepted, out->drafted);
    }
  }
}

TEST(GeneratorTest, AcceptedDraftsKeepOutputAndSaveSteps) {
  // An oracle that knows the greedy continuation (wrong at every third position) drives the
  // accept, partial-accept and reject paths, and the KV/MTP rollback after each.
  const testing::GoldenCase g = testing::LoadGolden("tiny-v3-mtp");
  auto model = Model::Load(g.dir);
  ASSERT_TRUE(model.ok());
  const auto& p = g.prompts[1];
  GenerateOptions plain;
  plain.max_new_tokens = 8;
  for (bool perfect : {true, false}) {
    GenerateOptions spec = plain;
    spec.speculative_mtp = true;
    spec.num_draft_tokens = 3;
    spec.draft_override = [&](std::span<const int32_t> emitted, int64_t k) {
      std::vector<int32_t> d;
      for (int64_t i = 0; i < k; ++i) {
        const size_t at = emitted.size() + i;
        if (at >= p.greedy_tokens.size()) break;
        const bool corrupt = !perfect && at % 3 == 2;
        d.push_back(corrupt ? (p.greedy_tokens[at] + 1) % 1024 : p.greedy_tokens[at]);
      }
      return d;
    };
    auto out = Generate(**model, p.prompt, spec);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->token_ids(), p.greedy_tokens) << "perfect=" << perfect;
    EXPECT_GT(out->accepted, 0);
    if (perfect) {
      EXPECT_EQ(out->accepted, out->drafted);
      EXPECT_LE(out->main_steps, 3);  // 1 prefill + 8 tokens in steps of 4
    } else {
      EXPECT_LT(out->accepted, out->drafted);
    }
  }
}

TEST(GeneratorTest, SyntheticFp8MtpModel) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dsv3_gen_" + std::to_string(::getpid()));
  SyntheticOptions options;
  options.fp8 = true;
  options.mtp_layers = 1;
  options.seed = 11;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.string(), options).ok());
  auto model = Model::Load(dir.string());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> prompt = {0, 17, 5, 300, 999};
  GenerateOptions plain;
  plain.max_new_tokens = 12;
  auto base = Generate(**model, prompt, plain);
  ASSERT_TRUE(base.ok()) << base.status();
  GenerateOptions spec = plain;
  spec.speculative_mtp = true;
  spec.num_draft_tokens = 2;
  auto out = Generate(**model, prompt, spec);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->token_ids(), base->token_ids());
  // Sampling with a seed is reproducible.
  GenerateOptions sampled = plain;
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.seed = 5;
  EXPECT_EQ(Generate(**model, prompt, sampled)->token_ids(),
            Generate(**model, prompt, sampled)->token_ids());
  std::filesystem::remove_all(dir);
}

TEST(GeneratorTest, BadInputIsAStatus) {
  auto model = Model::Load(testing::GoldenDir("tiny-v3-bf16"));
  ASSERT_TRUE(model.ok());
  GenerateOptions o;
  o.max_new_tokens = 4;
  EXPECT_EQ(Generate(**model, std::vector<int32_t>{}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generate(**model, std::vector<int32_t>{0, 1024}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generate(**model, std::vector<int32_t>{0, -1}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generate(**model, std::vector<int32_t>(2047, 3), o).status().code(),
            absl::StatusCode::kOutOfRange);
  GenerateOptions spec = o;
  spec.speculative_mtp = true;
  EXPECT_EQ(Generate(**model, std::vector<int32_t>{0}, spec).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // The KV pool: more tokens than it holds.
  auto pool = KvCachePool::Create((*model)->KvLayout(2, 4));
  ASSERT_TRUE(pool.ok());
  KvSequence seq;
  std::vector<int32_t> nine(9, 1);
  SequenceInput in{nine, &seq, false};
  EXPECT_EQ((*model)->Forward({&in, 1}, **pool).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.num_tokens, 0);
  std::vector<int32_t> eight(8, 1);
  SequenceInput fits{eight, &seq, false};
  EXPECT_TRUE((*model)->Forward({&fits, 1}, **pool).ok());
  EXPECT_EQ((*pool)->free_blocks(), 0);
  (*pool)->Release(seq);
  EXPECT_EQ((*pool)->free_blocks(), 2);
  // Too long for max_position_embeddings even with room in the pool.
  KvSequence s2;
  s2.num_tokens = 2047;
  std::vector<int32_t> two = {1, 2};
  SequenceInput past_end{two, &s2, false};
  EXPECT_EQ((*model)->Forward({&past_end, 1}, **pool).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace dsv3::engine
