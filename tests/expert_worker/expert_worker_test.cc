// The expert worker in-process: ExpertShard loads only the experts a placement assigns (and
// keeps the previous placement's until the next change), and ExpertComputeLoop answers
// dispatches from several attention workers, computing the same outputs as in-process
// experts and batching what arrives for a layer together.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine/model.h"
#include "engine/routed_experts.h"
#include "expert_worker/expert_compute_loop.h"
#include "expert_worker/expert_shard.h"
#include "experts/dispatch_plan.h"
#include "transport/ucx/ucx_expert_client.h"
#include "transport/ucx/ucx_expert_server.h"

namespace dsv3::expert {
namespace {

const char kModel[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-fp8";

transport::UcxOptions Tcp() {
  transport::UcxOptions o;
  o.transports = "tcp";
  o.net_devices = "lo";
  return o;
}

TEST(ExpertShardTest, HoldsOnlyItsExpertsAndKeepsThePreviousOnesUntilTheNextChange) {
  auto whole = engine::Model::Load(kModel);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto shard = ExpertShard::Load(kModel, 1, 2);
  ASSERT_TRUE(shard.ok()) << shard.status();
  const auto& layers = (*shard)->moe_layers();
  ASSERT_EQ(layers, (std::vector<int64_t>{1, 2}));
  std::shared_ptr<const ExpertHolding> h = (*shard)->current();
  EXPECT_EQ(h->placement.version, 1);
  EXPECT_EQ(h->experts_held, 16);  // groups 2, 3 (experts 8-15) of both MoE layers
  const auto& bank = h->model->weights().layers[1].moe.experts;
  EXPECT_TRUE(bank[7].gate.empty());
  EXPECT_FALSE(bank[8].gate.empty());
  // FP8 stays FP8: the bytes held are the checkpoint's bytes of those experts.
  EXPECT_EQ(bank[8].gate.dtype, engine::DType::kF8E4M3);
  const engine::MlpWeights& e = (*whole)->weights().layers[1].moe.experts[8];
  const int64_t per_expert = e.gate.weight_bytes() + e.up.weight_bytes() + e.down.weight_bytes();
  EXPECT_GE(h->expert_bytes, 16 * per_expert);

  // Version 2 moves expert 0 of layer 1 here: loaded, and 8-15 kept (the previous map's).
  experts::ExpertPlacement next = h->placement;
  next.version = 2;
  next.layers[0].replicas[0] = {0, 1};
  ASSERT_TRUE((*shard)->Apply(next).ok());
  h = (*shard)->current();
  EXPECT_EQ(h->experts_held, 17);
  EXPECT_FALSE(h->model->weights().layers[1].moe.experts[0].gate.empty());
  // Version 3 takes it away again; 2's experts stay until the next change.
  next.version = 3;
  next.layers[0].replicas[0] = {0};
  next.layers[0].replicas[8] = {0};
  ASSERT_TRUE((*shard)->Apply(next).ok());
  EXPECT_EQ((*shard)->current()->experts_held, 17);
  // Older versions are refused, the same one is a no-op, a broken map is an error.
  next.version = 2;
  EXPECT_EQ((*shard)->Apply(next).code(), absl::StatusCode::kFailedPrecondition);
  next.version = 3;
  EXPECT_TRUE((*shard)->Apply(next).ok());
  next.version = 4;
  next.layers[1].replicas[3] = {};
  EXPECT_EQ((*shard)->Apply(next).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*shard)->current()->placement.version, 3);

  EXPECT_EQ(ExpertShard::Load(kModel, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

// An expert worker rounds BF16 projections' activations unless told not to
// (--bf16_activations=false), and says which in its identity, which a decode worker of the other
// arithmetic then does not match.
TEST(ExpertShardTest, Bf16ActivationsAreInTheExpertsAndTheIdentity) {
  const std::string bf16 = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";
  auto plain = ExpertShard::Load(bf16, 0, 1, engine::WeightFormat::kAsStored, false);
  auto rounded = ExpertShard::Load(bf16, 0, 1);
  ASSERT_TRUE(plain.ok() && rounded.ok());
  EXPECT_TRUE((*rounded)->current()->model->weights().layers[1].moe.experts[0].up.bf16_activations);
  EXPECT_FALSE((*plain)->current()->model->weights().layers[1].moe.experts[0].up.bf16_activations);
  EXPECT_NE(engine::ModelConfigHash((*rounded)->config()),
            engine::ModelConfigHash((*plain)->config()));
  EXPECT_EQ(engine::ModelConfigHash((*rounded)->current()->model->config()),
            engine::ModelConfigHash((*rounded)->config()));
}

struct AttentionSide {
  AttentionSide() {
    ucx = *transport::UcxContext::Create(Tcp());
    client = *transport::UcxExpertClient::Create(*ucx);
  }
  std::unique_ptr<transport::UcxContext> ucx;
  std::unique_ptr<transport::UcxExpertClient> client;
};

TEST(ExpertComputeLoopTest, AnswersEqualInProcessExpertsAndBatchAcrossAttentionWorkers) {
  auto whole = engine::Model::Load(kModel);
  ASSERT_TRUE(whole.ok());
  auto shard = ExpertShard::Load(kModel, 0, 1);
  ASSERT_TRUE(shard.ok());
  auto ucx = transport::UcxContext::Create(Tcp());
  ASSERT_TRUE(ucx.ok());
  auto server = transport::UcxExpertServer::Create(**ucx, 0);
  ASSERT_TRUE(server.ok());
  AttentionSide a, b;
  for (AttentionSide* side : {&a, &b}) {
    auto member = (*server)->AddMember(side->ucx->worker_address());
    ASSERT_TRUE(member.ok());
    ASSERT_TRUE(side->client->Connect(0, (*ucx)->worker_address(), *member).ok());
  }
  // Dispatches queue up before the loop starts, so its first round takes both senders'.
  const engine::ModelConfig& c = (*whole)->config();
  const int64_t hidden = c.hidden_size, top_k = c.num_experts_per_tok, rows = 5;
  std::vector<float> x(static_cast<size_t>(rows * hidden));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) * 0.03f - 0.2f;
  std::vector<int32_t> experts(static_cast<size_t>(rows * top_k));
  for (size_t i = 0; i < experts.size(); ++i) experts[i] = static_cast<int32_t>((i * 5) % 16);
  const experts::ExpertPlacement& placement = (*shard)->current()->placement;
  auto plan = experts::PlanDispatch(placement.layers[1], experts.data(), rows, top_k, 1, {});
  ASSERT_TRUE(plan.ok());
  transport::ExchangeResult ra, rb;
  std::thread ta([&] {
    ra = a.client->Exchange({2, 1, &*plan, x.data(), hidden, absl::Now() + absl::Seconds(20)},
                            [] {});
  });
  std::thread tb([&] {
    rb = b.client->Exchange({2, 1, &*plan, x.data(), hidden, absl::Now() + absl::Seconds(20)},
                            [] {});
  });
  absl::SleepFor(absl::Milliseconds(300));
  ExpertComputeLoop loop(**shard, **server);
  ta.join();
  tb.join();
  ASSERT_TRUE(ra.status.ok()) << ra.status;
  ASSERT_TRUE(rb.status.ok()) << rb.status;

  // The same numbers as the whole model's in-process experts.
  engine::ExpertOutputs local;
  ASSERT_TRUE((*whole)
                  ->local_expert_executor()
                  .Run(2, x.data(), rows, hidden, top_k, experts.data(), &local, [] {})
                  .ok());
  for (const transport::ExchangeResult* r : {&ra, &rb}) {
    std::vector<const float*> slots(static_cast<size_t>(rows * top_k));
    experts::SlotOutputRows(*plan, {r->outputs[0].data()}, hidden, slots.data());
    for (size_t s = 0; s < slots.size(); ++s) {
      for (int64_t j = 0; j < hidden; ++j) ASSERT_EQ(slots[s][j], local.slots[s][j]) << s;
    }
  }
  const ExpertLoadSnapshot snap = loop.Snapshot();
  EXPECT_EQ(snap.dispatches, 2);
  EXPECT_EQ(snap.batches, 1);  // both senders' tokens in one grouped computation
  int64_t tokens = 0;
  for (int64_t t : snap.tokens) tokens += t;
  EXPECT_EQ(tokens, 2 * rows * top_k);
  EXPECT_GT(snap.queue_ns, 0);
  EXPECT_GT(snap.compute_ns, 0);
  // Layer 2 is MoE layer index 1: counts land there.
  EXPECT_EQ(snap.tokens[static_cast<size_t>(16 + experts[0])] > 0, true);
}

}  // namespace
}  // namespace dsv3::expert
