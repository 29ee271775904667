// Role-based loading: attention side and routed-expert subsets bind only their tensors, the
// split model computes what the whole one does, missing experts are clear errors; load
// progress lines; projections copied into huge pages.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/load_progress.h"
#include "engine/model.h"
#include "engine/synthetic_checkpoint.h"

namespace dsv3::engine {
namespace {

class LoadRoleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("dsv3_roles_" + std::to_string(::getpid())));
    SyntheticOptions options;
    options.mtp_layers = 1;
    options.seed = 3;
    ASSERT_TRUE(WriteSyntheticCheckpoint(dir_->string(), options).ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string dir() { return dir_->string(); }

  static absl::StatusOr<std::vector<float>> LastLogits(const Model& model) {
    auto pool = KvCachePool::Create(model.KvLayout(4, 16));
    if (!pool.ok()) return pool.status();
    const std::vector<int32_t> tokens = {0, 17, 5, 300, 999};
    KvSequence seq;
    SequenceInput in{tokens, &seq, false};
    auto out = model.Forward({&in, 1}, **pool);
    if (!out.ok()) return out.status();
    auto row = out->LastLogits(0);
    return std::vector<float>(row.begin(), row.end());
  }

  static std::filesystem::path* dir_;
};
std::filesystem::path* LoadRoleTest::dir_ = nullptr;

// Forwards the routed experts to another model's LocalExpertExecutor (an in-process stand-in
// for an expert worker).
class ForwardingExecutor final : public RoutedExpertExecutor {
 public:
  explicit ForwardingExecutor(RoutedExpertExecutor* target) : target_(target) {}
  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, ExpertOutputs* outputs,
                   absl::FunctionRef<void()> overlapped) override {
    ++calls_;
    return target_->Run(layer, x, rows, hidden, top_k, experts, outputs, overlapped);
  }
  int calls_ = 0;

 private:
  RoutedExpertExecutor* target_;
};

TEST_F(LoadRoleTest, AttentionSidePlusExpertRoleEqualsWholeModel) {
  auto whole = Model::Load(dir());
  ASSERT_TRUE(whole.ok()) << whole.status();
  LoadOptions attention;
  attention.role = LoadRole::kAttentionSide;
  auto front = Model::Load(dir(), attention);
  ASSERT_TRUE(front.ok()) << front.status();
  LoadOptions experts;
  experts.role = LoadRole::kRoutedExperts;
  for (int64_t e = 0; e < (*whole)->config().n_routed_experts; ++e) experts.expert_ids.push_back(e);
  auto back = Model::Load(dir(), experts);
  ASSERT_TRUE(back.ok()) << back.status();

  // The roles partition the checkpoint.
  EXPECT_LT((*front)->weights().bytes, (*whole)->weights().bytes);
  EXPECT_EQ((*front)->weights().bytes + (*back)->weights().bytes, (*whole)->weights().bytes);
  EXPECT_EQ((*front)->weights().tensors + (*back)->weights().tensors, (*whole)->weights().tensors);

  // Without an executor the attention side cannot run the routed experts.
  auto missing = LastLogits(**front);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("not loaded"), std::string::npos) << missing.status();
  // The expert role cannot run a forward step at all.
  auto no_attention = LastLogits(**back);
  ASSERT_FALSE(no_attention.ok());
  EXPECT_EQ(no_attention.status().code(), absl::StatusCode::kFailedPrecondition);

  ForwardingExecutor remote(&(*back)->local_expert_executor());
  (*front)->set_expert_executor(&remote);
  auto split = LastLogits(**front);
  auto reference = LastLogits(**whole);
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_GT(remote.calls_, 0);
  EXPECT_EQ(*split, *reference);  // same kernels, same order: bit-identical
}

TEST_F(LoadRoleTest, ExpertSubsetHoldsOnlyThoseExperts) {
  auto whole = Model::Load(dir());
  ASSERT_TRUE(whole.ok()) << whole.status();
  const ModelConfig& c = (*whole)->config();
  int64_t moe_layer = -1;
  for (int64_t l = 0; l < c.num_hidden_layers && moe_layer < 0; ++l) {
    if (c.IsMoeLayer(l)) moe_layer = l;
  }
  ASSERT_GE(moe_layer, 0);
  LoadOptions options;
  options.role = LoadRole::kRoutedExperts;
  options.experts = {{moe_layer, 1}, {moe_layer, 2}};
  auto part = Model::Load(dir(), options);
  ASSERT_TRUE(part.ok()) << part.status();
  const auto& bank = (*part)->weights().layers[static_cast<size_t>(moe_layer)].moe.experts;
  ASSERT_EQ(static_cast<int64_t>(bank.size()), c.n_routed_experts);
  EXPECT_TRUE(bank[0].gate.empty());
  EXPECT_FALSE(bank[1].gate.empty());
  EXPECT_FALSE(bank[2].down.empty());
  const MlpWeights& e1 = bank[1];
  EXPECT_EQ((*part)->weights().bytes,
            2 * (e1.gate.weight_bytes() + e1.up.weight_bytes() + e1.down.weight_bytes()));
  EXPECT_TRUE((*part)->weights().embed.empty());

  // Held experts run; any other is a FailedPrecondition naming layer and expert.
  const int64_t hidden = c.hidden_size;
  std::vector<float> x(static_cast<size_t>(hidden), 0.5f);
  ExpertOutputs ys;
  const int32_t held[2] = {1, 2};
  int overlapped = 0;
  LocalExpertExecutor& ex = (*part)->local_expert_executor();
  EXPECT_TRUE(ex.Run(moe_layer, x.data(), 1, hidden, 2, held, &ys, [&] { ++overlapped; }).ok());
  EXPECT_EQ(ys.slots.size(), 2u);
  EXPECT_EQ(overlapped, 1);
  const int32_t other[2] = {1, 5};
  const absl::Status st =
      ex.Run(moe_layer, x.data(), 1, hidden, 2, other, &ys, [&] { ++overlapped; });
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("routed expert 5 of layer"), std::string::npos) << st;
}

// Projections copied out of the checkpoint mapping into huge pages (LoadOptions::huge_pages)
// compute bit for bit what the mapped ones do, in BF16 and FP8, whole model and expert role,
// and none of them is read from the mapping any more.
TEST_F(LoadRoleTest, HugePageCopyComputesWhatTheMappingDoes) {
  const std::string fp8_dir = dir() + "-fp8";
  SyntheticOptions options;
  options.mtp_layers = 1;
  options.seed = 3;
  options.fp8 = true;
  ASSERT_TRUE(WriteSyntheticCheckpoint(fp8_dir, options).ok());
  for (const std::string& d : {dir(), fp8_dir}) {
    SCOPED_TRACE(d);
    LoadOptions mapped;
    mapped.huge_pages = false;
    auto a = Model::Load(d, mapped);
    auto b = Model::Load(d);  // huge pages by default
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    auto la = LastLogits(**a);
    auto lb = LastLogits(**b);
    ASSERT_TRUE(la.ok() && lb.ok());
    EXPECT_EQ(*la, *lb);
    EXPECT_EQ((*a)->weights().bytes, (*b)->weights().bytes);
    int64_t moved = 0, in_mapping = 0;
    ModelWeights w = (*b)->weights();  // a copy: the walk takes a mutable one
    ForEachProjection(&w, [&](Linear* p, ProjectionKind) {
      if (p->empty()) return;
      (p->owner != nullptr ? moved : in_mapping) += 1;
    });
    EXPECT_GT(moved, 0);
    EXPECT_EQ(in_mapping, 0);
  }
  // An expert role copies only its experts.
  LoadOptions experts;
  experts.role = LoadRole::kRoutedExperts;
  experts.expert_ids = {1};
  auto e = Model::Load(fp8_dir, experts);
  ASSERT_TRUE(e.ok()) << e.status();
  ModelWeights w = (*e)->weights();
  int64_t bound = 0;
  ForEachProjection(&w, [&](Linear* p, ProjectionKind) {
    if (p->empty()) return;
    ++bound;
    EXPECT_NE(p->owner, nullptr);
  });
  EXPECT_EQ(bound,
            3 * ((*e)->config().num_hidden_layers + 1 - (*e)->config().first_k_dense_replace));
  std::filesystem::remove_all(fp8_dir);
}

TEST(LoadProgressTest, ThrottledLinesAndFinalLine) {
  ::testing::internal::CaptureStderr();
  {
    LoadProgress p("/models/x", 100, 10, ProgressMode::kAlways);
    for (int i = 0; i < 10; ++i) p.Add(10, 1);
    p.Finish();
    p.Finish();
  }
  {
    LoadProgress quiet("/models/small", 100, 10, ProgressMode::kAuto);  // under 1 GiB
    quiet.Add(100, 10);
    quiet.Finish();
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("dsv3: loaded /models/x: 0.00 GB, 10 tensors"), std::string::npos) << err;
  EXPECT_EQ(err.find("/models/small"), std::string::npos) << err;
  // Exactly one final line.
  EXPECT_EQ(err.find("dsv3: loaded"), err.rfind("dsv3: loaded"));
}

}  // namespace
}  // namespace dsv3::engine
