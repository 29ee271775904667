// The experts module: default placement, the dispatch plan, packing, gathering.

#include "experts/dispatch_plan.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "experts/expert_placement.h"
#include "experts/placement_proto.h"

namespace dsv3::experts {
namespace {

TEST(ExpertPlacementTest, DefaultKeepsGroupsTogether) {
  // 64 experts in 8 groups of 8 on 3 workers: groups 0-2, 3-5, 6-7.
  ExpertPlacement p = DefaultExpertPlacement({1, 2}, 64, 8, 3);
  ASSERT_TRUE(p.Validate({1, 2}, 64).ok());
  EXPECT_EQ(p.version, 1);
  for (int64_t e = 0; e < 64; ++e) {
    const int32_t group = static_cast<int32_t>(e / 8);
    EXPECT_EQ(p.layers[0].replicas[e], std::vector<int32_t>{group * 3 / 8}) << e;
  }
  EXPECT_EQ(p.SlotsPerWorker(), (std::vector<int64_t>{48, 48, 32}));
  EXPECT_EQ(p.ExpertsOf(2).size(), 32u);
  EXPECT_EQ(p.ExpertsOf(2).front(), (std::pair<int64_t, int64_t>{1, 48}));
  EXPECT_EQ(p.Find(2), &p.layers[1]);
  EXPECT_EQ(p.Find(0), nullptr);
}

TEST(ExpertPlacementTest, MoreWorkersThanGroupsSplitsGroupsMinimally) {
  // 16 experts in 4 groups on 8 workers: each group over exactly 2 workers.
  ExpertPlacement p = DefaultExpertPlacement({0}, 16, 4, 8);
  ASSERT_TRUE(p.Validate({0}, 16).ok());
  for (int64_t g = 0; g < 4; ++g) {
    std::set<int32_t> workers;
    for (int64_t e = g * 4; e < g * 4 + 4; ++e) workers.insert(p.layers[0].replicas[e][0]);
    EXPECT_EQ(workers.size(), 2u) << g;
  }
}

TEST(ExpertPlacementTest, ValidateNamesTheProblem) {
  ExpertPlacement p = DefaultExpertPlacement({1}, 4, 1, 2);
  EXPECT_FALSE(p.Validate({1, 2}, 4).ok());
  EXPECT_FALSE(p.Validate({1}, 5).ok());
  p.layers[0].replicas[3] = {1, 1};
  EXPECT_NE(p.Validate({1}, 4).message().find("repeated worker 1"), std::string::npos);
  p.layers[0].replicas[3] = {};
  EXPECT_NE(p.Validate({1}, 4).message().find("expert 3 of layer 1 has no worker"),
            std::string::npos);
}

TEST(ExpertPlacementTest, ProtoRoundTrip) {
  ExpertPlacement p = DefaultExpertPlacement({3, 1}, 8, 2, 2);
  p.version = 7;
  p.layers[1].replicas[5] = {1, 0};
  p.worker_addresses = {"a:1", "b:2"};
  v1::ExpertPlacement proto;
  PlacementToProto(p, &proto);
  ExpertPlacement back = PlacementFromProto(proto);
  EXPECT_EQ(back.version, 7);
  EXPECT_EQ(back.num_workers, 2);
  ASSERT_EQ(back.layers.size(), 2u);
  EXPECT_EQ(back.layers[0].layer, 1);
  EXPECT_EQ(back.layers[1].layer, 3);
  EXPECT_EQ(back.layers[1].replicas[5], (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(back.worker_addresses, p.worker_addresses);
}

TEST(DispatchPlanTest, RowsOncePerWorkerPairsPerSlot) {
  ExpertPlacement p = DefaultExpertPlacement({0}, 4, 1, 2);  // experts 0,1 -> w0; 2,3 -> w1
  const int32_t experts[] = {0, 1, 2,                        // row 0: two pairs on w0, one on w1
                             3, 2, 3};                       // row 1: w1 only (expert 3 twice)
  auto plan = PlanDispatch(p.layers[0], experts, 2, 3, 2, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  const auto& d0 = plan->destinations[0];
  const auto& d1 = plan->destinations[1];
  EXPECT_EQ(d0.rows, std::vector<int32_t>{0});
  EXPECT_EQ(d0.pair_expert, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(d1.rows, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(d1.pair_token, (std::vector<int32_t>{0, 1, 1, 1}));
  EXPECT_EQ(d1.pair_expert, (std::vector<int32_t>{2, 3, 2, 3}));
  EXPECT_EQ(plan->slot_worker, (std::vector<int32_t>{0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(plan->slot_pair, (std::vector<int32_t>{0, 1, 0, 1, 2, 3}));

  // Pack, unpack, answer each pair with (row value + expert), gather in slot order.
  const int64_t hidden = 2;
  const float x[] = {10, 11, 20, 21};
  std::vector<std::vector<float>> outputs(2);
  for (int w = 0; w < 2; ++w) {
    const auto& d = plan->destinations[static_cast<size_t>(w)];
    std::vector<uint8_t> wire(static_cast<size_t>(
        DispatchPayloadBytes(static_cast<int64_t>(d.rows.size()), d.num_pairs(), hidden)));
    PackDispatch(d, x, hidden, wire.data());
    auto view = UnpackDispatch(wire.data(), static_cast<int64_t>(wire.size()),
                               static_cast<int64_t>(d.rows.size()), d.num_pairs(), hidden);
    ASSERT_TRUE(view.ok()) << view.status();
    for (int64_t i = 0; i < d.num_pairs(); ++i) {
      for (int64_t c = 0; c < hidden; ++c) {
        outputs[w].push_back(view->x[view->pair_token[i] * hidden + c] + view->pair_expert[i]);
      }
    }
  }
  std::vector<float> ys(6 * hidden);
  GatherOutputs(*plan, {outputs[0].data(), outputs[1].data()}, hidden, ys.data());
  const float want[] = {10, 11, 11, 12, 12, 13, 23, 24, 22, 23, 23, 24};
  EXPECT_EQ(ys, std::vector<float>(std::begin(want), std::end(want)));
}

TEST(DispatchPlanTest, ReplicasShareTheLoadAndCoverADownWorker) {
  ExpertPlacement p = DefaultExpertPlacement({0}, 2, 1, 3);
  p.layers[0].replicas[0] = {0, 2};  // expert 0 on workers 0 and 2
  std::vector<int32_t> experts(8, 0);
  auto plan = PlanDispatch(p.layers[0], experts.data(), 8, 1, 3, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->destinations[0].num_pairs(), 4);
  EXPECT_EQ(plan->destinations[2].num_pairs(), 4);
  // Worker 0 down: everything goes to the replica.
  plan = PlanDispatch(p.layers[0], experts.data(), 8, 1, 3, {false, true, true});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->destinations[2].num_pairs(), 8);
  // Expert 1 lives only on worker 1: down means UNAVAILABLE naming the expert.
  const int32_t one[] = {1};
  auto down = PlanDispatch(p.layers[0], one, 1, 1, 3, {true, false, true});
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(down.status().message().find("expert 1 of layer 0"), std::string::npos);
  const int32_t bad[] = {2};
  EXPECT_EQ(PlanDispatch(p.layers[0], bad, 1, 1, 3, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DispatchPlanTest, UnpackRejectsBadPayloads) {
  std::vector<uint8_t> wire(static_cast<size_t>(DispatchPayloadBytes(1, 1, 2)));
  const int32_t pair[2] = {3, 0};  // row 3 of 1
  std::memcpy(wire.data() + 8, pair, sizeof(pair));
  EXPECT_EQ(UnpackDispatch(wire.data(), 16, 1, 1, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(UnpackDispatch(wire.data(), 16, 1, 1, 2).status().message().find("names row 3"),
            std::string::npos);
  EXPECT_FALSE(UnpackDispatch(wire.data(), 15, 1, 1, 2).ok());
}

}  // namespace
}  // namespace dsv3::experts
