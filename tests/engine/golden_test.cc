// The engine against the float64 reference outputs in tests/data/golden/: full-sequence
// logits (expanded and absorbed attention), token-by-token decode through the paged cache,
// ragged batches mixing prefill chunks and decode, greedy continuations, MTP logits.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "engine/kernels/ops.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/mtp.h"
#include "tests/engine/golden_data.h"

namespace dsv3::engine::testing {
namespace {

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    golden_ = LoadGolden(GetParam());
    ASSERT_FALSE(golden_.prompts.empty());
    // The reference's math to 1e-4: f32-level products. The default, activations rounded to
    // bf16, is held to the golden logits in weight_format_test.cc.
    LoadOptions exact;
    exact.bf16_activations = false;
    auto model = Model::Load(golden_.dir, exact);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  std::unique_ptr<KvCachePool> MakePool(int64_t blocks, int64_t block_size) {
    auto pool = KvCachePool::Create(model_->KvLayout(blocks, block_size));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  void ExpectClose(const char* what, const float* got, const float* want, int64_t n) {
    const Diff d = Compare(got, want, n);
    std::printf("[golden] %s %s: max|dlogit| %.3g, max|logit| %.3g, relative %.3g\n",
                GetParam().c_str(), what, d.max_abs_diff, d.max_abs_ref, d.relative());
    EXPECT_LE(d.max_abs_diff, kLogitTolerance * d.max_abs_ref) << what;
  }

  GoldenCase golden_;
  std::unique_ptr<Model> model_;
};

TEST_P(GoldenTest, PrefillLogitsBothAttentionForms) {
  for (AttentionForm form : {AttentionForm::kExpanded, AttentionForm::kAbsorbed}) {
    for (const GoldenPrompt& p : golden_.prompts) {
      auto pool = MakePool(4, 64);
      KvSequence seq;
      SequenceInput in{p.prompt, &seq, /*all_logits=*/true};
      ForwardTrace trace;
      ForwardOptions options;
      options.attention = form;
      options.trace = &trace;
      auto out = model_->Forward({&in, 1}, *pool, options);
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ(out->logits.size(), p.logits.size());
      ExpectClose(form == AttentionForm::kExpanded ? "prefill/expanded" : "prefill/absorbed",
                  out->logits.data(), p.logits.data(), static_cast<int64_t>(p.logits.size()));
      EXPECT_EQ(seq.num_tokens, static_cast<int64_t>(p.prompt.size()));
      // Diagnostics the golden also records: residual norms and expert choices.
      ASSERT_EQ(trace.layer_output_l2.size(),
                static_cast<size_t>(model_->config().num_hidden_layers));
      for (size_t t = 0; t < p.final_hidden_l2.size(); ++t) {
        EXPECT_NEAR(trace.layer_output_l2.back()[t], p.final_hidden_l2[t],
                    1e-5 * p.final_hidden_l2[t]);
      }
      const int64_t k = model_->config().num_experts_per_tok;
      for (const auto& [layer, experts] : p.routing_experts) {
        const auto& got = trace.routing.at(layer).experts;
        for (size_t t = 0; t < experts.size(); ++t) {
          std::vector<int32_t> row(got.begin() + t * k, got.begin() + (t + 1) * k);
          EXPECT_EQ(row, experts[t]) << "layer " << layer << " token " << t;
        }
      }
    }
  }
}

TEST_P(GoldenTest, TokenByTokenDecodeThroughPagedCache) {
  const int64_t vocab = golden_.vocab;
  for (const GoldenPrompt& p : golden_.prompts) {
    auto pool = MakePool(16, 8);  // small blocks: a 33-token prompt spans 5 of them
    KvSequence seq;
    std::vector<float> logits;
    for (int32_t token : p.prompt) {
      SequenceInput in{{&token, 1}, &seq, false};
      auto out = model_->Forward({&in, 1}, *pool);  // kAuto: absorbed form for one token
      ASSERT_TRUE(out.ok()) << out.status();
      logits.insert(logits.end(), out->logits.begin(), out->logits.end());
    }
    ASSERT_EQ(logits.size(), p.prompt.size() * vocab);
    ExpectClose("decode/paged", logits.data(), p.logits.data(),
                static_cast<int64_t>(logits.size()));
  }
}

// A prefix computed by one sequence and kept in the pool's cache serves another: only the
// suffix is computed, its logits still match the reference, and the cached blocks are read,
// never written.
TEST_P(GoldenTest, SuffixOverACachedPrefixMatchesTheReference) {
  const int64_t vocab = golden_.vocab;
  const int64_t block = 4;
  int tested = 0;
  for (const GoldenPrompt& p : golden_.prompts) {
    const int64_t n = static_cast<int64_t>(p.prompt.size());
    const int64_t cached_blocks = (n - 1) / block;
    if (cached_blocks < 2) continue;
    ++tested;
    auto pool = MakePool(16, block);
    std::vector<uint64_t> names;
    for (int64_t k = 0; k < cached_blocks; ++k) names.push_back(1000 + k);
    {
      KvSequence first;
      SequenceInput in{std::span<const int32_t>(p.prompt).subspan(0, cached_blocks * block), &first,
                       false};
      ASSERT_TRUE(model_->Forward({&in, 1}, *pool).ok());
      pool->NameBlocks(first, names);
      pool->Release(first);
    }
    EXPECT_EQ(pool->blocks().cached_blocks(), cached_blocks);
    auto snapshot = [&](const KvSequence& seq) {
      std::vector<float> rows;
      for (int64_t layer = 0; layer < pool->layout().num_layers; ++layer) {
        for (int64_t pos = 0; pos < cached_blocks * block; ++pos) {
          const float* r = pool->Row(layer, seq, pos);
          rows.insert(rows.end(), r, r + pool->layout().row_floats());
        }
      }
      return rows;
    };
    KvSequence second;
    ASSERT_EQ(pool->TakeCachedPrefix(names, second), cached_blocks * block);
    const std::vector<float> before = snapshot(second);
    SequenceInput in{std::span<const int32_t>(p.prompt).subspan(cached_blocks * block), &second,
                     /*all_logits=*/true};
    auto out = model_->Forward({&in, 1}, *pool);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(second.num_tokens, n);
    ExpectClose("suffix over cached prefix", out->logits.data(),
                p.logits.data() + cached_blocks * block * vocab,
                (n - cached_blocks * block) * vocab);
    EXPECT_EQ(snapshot(second), before) << "a cached block was written";
    pool->Release(second);
    EXPECT_EQ(pool->blocks().referenced_blocks(), 0);
  }
  EXPECT_GT(tested, 0);
}

TEST_P(GoldenTest, RaggedBatchesMatchSequencesAlone) {
  // Three prompts plus a filler, in chunks of different sizes in shared steps, so block tables
  // interleave and every step mixes prefill chunks with single-token decode.
  const int64_t vocab = golden_.vocab;
  auto pool = MakePool(64, 4);
  const size_t n = golden_.prompts.size();
  std::vector<KvSequence> seqs(n + 1);
  std::vector<std::vector<float>> logits(n);
  std::vector<size_t> done(n, 0);
  const std::vector<int32_t> filler = {0, 5, 9, 3, 7, 1, 2};
  size_t filler_done = 0;
  const size_t chunk_pattern[] = {1, 5, 1, 3, 16, 1, 2, 40};
  for (int step = 0;; ++step) {
    std::vector<SequenceInput> batch;
    std::vector<size_t> which;
    for (size_t i = 0; i < n; ++i) {
      const auto& prompt = golden_.prompts[i].prompt;
      if (done[i] == prompt.size()) continue;
      const size_t len =
          std::min(prompt.size() - done[i], chunk_pattern[(step + i) % std::size(chunk_pattern)]);
      batch.push_back({std::span<const int32_t>(prompt).subspan(done[i], len), &seqs[i], true});
      which.push_back(i);
      done[i] += len;
    }
    if (filler_done < filler.size()) {
      batch.push_back({std::span<const int32_t>(filler).subspan(filler_done, 1), &seqs[n], false});
      ++filler_done;
    }
    if (which.empty()) break;
    auto out = model_->Forward(batch, *pool);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t b = 0; b < which.size(); ++b) {
      for (int64_t r = 0; r < out->logits_count[b]; ++r) {
        auto row = out->LogitsRow(b, r);
        logits[which[b]].insert(logits[which[b]].end(), row.begin(), row.end());
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(logits[i].size(), golden_.prompts[i].prompt.size() * vocab);
    ExpectClose("batched", logits[i].data(), golden_.prompts[i].logits.data(),
                static_cast<int64_t>(logits[i].size()));
  }
}

TEST_P(GoldenTest, GreedyContinuationThroughCache) {
  const int64_t vocab = golden_.vocab;
  for (const GoldenPrompt& p : golden_.prompts) {
    auto pool = MakePool(8, 64);
    KvSequence seq;
    std::vector<int32_t> next = p.prompt;
    std::vector<int32_t> generated;
    std::vector<float> step_logits;
    for (size_t step = 0; step < p.greedy_tokens.size(); ++step) {
      SequenceInput in{next, &seq, false};
      auto out = model_->Forward({&in, 1}, *pool);
      ASSERT_TRUE(out.ok()) << out.status();
      auto row = out->LastLogits(0);
      step_logits.insert(step_logits.end(), row.begin(), row.end());
      const int32_t token =
          static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      generated.push_back(token);
      next = {token};
    }
    EXPECT_EQ(generated, p.greedy_tokens);
    ASSERT_EQ(step_logits.size(), p.greedy_step_logits.size());
    ExpectClose("greedy-steps", step_logits.data(), p.greedy_step_logits.data(),
                static_cast<int64_t>(step_logits.size()));
    (void)vocab;
  }
}

// Only tiny-v3-mtp has an MTP layer and MTP golden logits.
class GoldenMtpTest : public GoldenTest {};

TEST_P(GoldenMtpTest, MtpLogits) {
  ASSERT_FALSE(golden_.prompts[0].mtp_logits.empty());
  ASSERT_TRUE(model_->has_mtp());
  const int64_t hidden = model_->config().hidden_size;
  for (const GoldenPrompt& p : golden_.prompts) {
    auto pool = MakePool(4, 64);
    KvSequence seq;
    SequenceInput in{p.prompt, &seq, true};
    ForwardOptions options;
    options.return_hidden = true;
    auto main = model_->Forward({&in, 1}, *pool, options);
    ASSERT_TRUE(main.ok()) << main.status();
    const int64_t n = static_cast<int64_t>(p.prompt.size()) - 1;
    MtpInput mtp;
    mtp.hidden = std::span<const float>(main->hidden).subspan(0, n * hidden);
    mtp.next_tokens = std::span<const int32_t>(p.prompt).subspan(1, n);
    mtp.kv = &seq;
    mtp.all_logits = true;
    auto out = MtpForward(*model_, {&mtp, 1}, *pool);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->logits.size(), p.mtp_logits.size());
    ExpectClose("mtp", out->logits.data(), p.mtp_logits.data(),
                static_cast<int64_t>(out->logits.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenMtpTest, ::testing::Values("tiny-v3-mtp"),
                         [](const auto&) { return std::string("tiny_v3_mtp"); });
INSTANTIATE_TEST_SUITE_P(Cases, GoldenTest,
                         ::testing::Values("tiny-v3-bf16", "tiny-v3-fp8", "tiny-v3-mtp"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace dsv3::engine::testing
