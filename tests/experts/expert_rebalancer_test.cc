// The EPLB rebalancer's pure parts: the load window, the decision, and the switch plan, whose
// point is that no attention worker is ever routed to an expert worker that does not hold
// the expert, whatever order the calls of a step land in.

#include "experts/expert_rebalancer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <tuple>

namespace dsv3::experts {
namespace {

using ::testing::HasSubstr;

v1::ExpertLoadReport Report(std::vector<std::tuple<int, int, int64_t>> counts) {
  v1::ExpertLoadReport r;
  for (const auto& [layer, expert, tokens] : counts) {
    v1::ExpertTokenCount* c = r.add_counts();
    c->set_layer(layer);
    c->set_expert(expert);
    c->set_tokens(tokens);
  }
  return r;
}

// The tiny preset's shape: MoE layers 1 and 2, 16 experts in 4 groups, on 3 workers.
ExpertPlacement TinyDefault() { return DefaultExpertPlacement({1, 2}, 16, 4, 3); }

TEST(ExpertLoadWindowTest, SumsWorkersAndFitsThePlacement) {
  ExpertLoadWindow window;
  window.Add(Report({{1, 3, 10}, {2, 0, 4}}));
  window.Add(Report({{1, 3, 5}, {1, 15, 1}, {1, 16, 7}, {9, 0, 2}}));  // replica of 3; strays
  EXPECT_EQ(window.total(), 29);
  ExpertLoad load = window.Take(TinyDefault());
  ASSERT_EQ(load.layers, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(load.tokens[0][3], 15);
  EXPECT_EQ(load.tokens[0][15], 1);
  EXPECT_EQ(load.tokens[1][0], 4);
  EXPECT_EQ(load.tokens[0].size(), 16u);  // expert 16 and layer 9 are not in the placement
  EXPECT_EQ(window.total(), 0);
  EXPECT_EQ(window.Take(TinyDefault()).tokens[0][3], 0);  // a fresh window
}

TEST(DecideRebalanceTest, AppliesOnlyAMeaningfulGain) {
  const ExpertPlacement current = TinyDefault();
  const ExpertLoad skewed = ZipfExpertLoad({1, 2}, 16, 1.0, 4096, 7);
  absl::StatusOr<RebalanceDecision> d = DecideRebalance(current, skewed, 3, 2, 1000, 0.05);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->apply) << d->reason;
  EXPECT_LT(d->proposed.overall, 0.95 * d->current.overall);
  EXPECT_EQ(d->placement.version, 2);
  EXPECT_NEAR(d->tokens, 2 * 4096, 16);  // the Zipf shares are rounded
  EXPECT_THAT(d->reason, HasSubstr("applying as version 2"));

  // The proposal is already in effect: nothing left to gain.
  absl::StatusOr<RebalanceDecision> again = DecideRebalance(d->placement, skewed, 3, 3, 1000, 0.05);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->apply) << again->reason;
  EXPECT_THAT(again->reason, HasSubstr("keeping it"));

  // Too few tokens to judge.
  absl::StatusOr<RebalanceDecision> few = DecideRebalance(current, skewed, 3, 2, 1 << 20, 0.05);
  ASSERT_TRUE(few.ok());
  EXPECT_FALSE(few->apply);
  EXPECT_THAT(few->reason, HasSubstr("fewer than"));
  EXPECT_GT(few->current.overall, 1.0);  // still measured
}

TEST(DecideRebalanceTest, ClampsRedundantCopiesToWhatFits) {
  // One worker can hold no second copy of anything.
  const ExpertPlacement one = DefaultExpertPlacement({1, 2}, 16, 4, 1);
  absl::StatusOr<RebalanceDecision> d =
      DecideRebalance(one, ZipfExpertLoad({1, 2}, 16, 1.0, 4096, 7), 5, 2, 0, 0.05);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->apply);
  EXPECT_DOUBLE_EQ(d->current.overall, 1.0);
}

// (worker, layer, expert) triples a placement routes to.
std::set<std::tuple<int32_t, int64_t, int64_t>> Routes(const ExpertPlacement& p) {
  std::set<std::tuple<int32_t, int64_t, int64_t>> out;
  for (const ExpertPlacement::Layer& l : p.layers) {
    for (size_t e = 0; e < l.replicas.size(); ++e) {
      for (int32_t w : l.replicas[e]) out.insert({w, l.layer, static_cast<int64_t>(e)});
    }
  }
  return out;
}

// An expert worker as ExpertShard behaves: it holds its experts of the placement in effect
// and of the previous one.
struct SimWorker {
  ExpertPlacement current, previous;
  bool Holds(int32_t w, int64_t layer, int64_t expert) const {
    for (const ExpertPlacement* p : {&current, &previous}) {
      if (Routes(*p).count({w, layer, expert})) return true;
    }
    return false;
  }
};

TEST(PlanPlacementSwitchTest, NoAttentionWorkerIsRoutedToAnExpertNotLoaded) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    ExpertPlacement from = TinyDefault();
    for (int round = 0; round < 2; ++round) {  // two rebalances in a row, on different loads
      const ExpertLoad load = ZipfExpertLoad({1, 2}, 16, 1.2, 4096, seed * 10 + round);
      absl::StatusOr<ExpertPlacement> to = RebalanceExperts(load, 3, 3, from.version + 1);
      ASSERT_TRUE(to.ok());
      to->worker_addresses = {"a:1", "b:2", "c:3"};
      const std::vector<PlacementStep> steps = PlanPlacementSwitch(from, *to, from.version + 1);
      ASSERT_FALSE(steps.empty());

      // Versions rise call by call; the last step gives every worker `to`, at the top version.
      int64_t version = from.version;
      for (const PlacementStep& step : steps) {
        for (const PlacementApply& a : step) {
          if (&step != &steps.back()) {
            EXPECT_EQ(a.placement.version, ++version);
          }
          EXPECT_EQ(a.placement.worker_addresses, to->worker_addresses);
          EXPECT_TRUE(a.placement.Validate({1, 2}, 16).ok());
        }
      }
      ASSERT_EQ(steps.back().size(), 3u);
      for (int32_t w = 0; w < 3; ++w) {
        EXPECT_EQ(steps.back()[static_cast<size_t>(w)].worker, w);
        EXPECT_EQ(steps.back()[static_cast<size_t>(w)].placement.version, version + 1);
        EXPECT_EQ(Routes(steps.back()[static_cast<size_t>(w)].placement), Routes(*to));
      }

      // Every subset of a step's calls may have landed; attention workers may route by any
      // map announced so far (they lag), which must only reach experts the workers hold.
      std::vector<SimWorker> workers(3, SimWorker{from, from});
      std::vector<ExpertPlacement> announced = {from};
      for (const PlacementStep& step : steps) {
        for (uint32_t mask = 0; mask < (1u << step.size()); ++mask) {
          std::vector<SimWorker> now = workers;
          std::vector<ExpertPlacement> maps = announced;
          for (size_t i = 0; i < step.size(); ++i) {
            if (!(mask & (1u << i))) continue;
            SimWorker& sw = now[static_cast<size_t>(step[i].worker)];
            sw.previous = sw.current;
            sw.current = step[i].placement;
            maps.push_back(step[i].placement);
          }
          for (const ExpertPlacement& map : maps) {
            for (const auto& [w, layer, expert] : Routes(map)) {
              EXPECT_TRUE(now[static_cast<size_t>(w)].Holds(w, layer, expert))
                  << "seed " << seed << " round " << round << ": map " << map.version
                  << " routes layer " << layer << " expert " << expert << " to worker " << w;
            }
          }
        }
        for (const PlacementApply& a : step) {
          SimWorker& sw = workers[static_cast<size_t>(a.worker)];
          sw.previous = sw.current;
          sw.current = a.placement;
          announced.push_back(a.placement);
        }
      }
      // Attention workers with traffic are on `to` by the next rebalance.
      from = steps.back().front().placement;
    }
  }
}

TEST(PlanPlacementSwitchTest, NothingNewToLoadIsOneStep) {
  ExpertPlacement from = TinyDefault();
  ExpertPlacement to = from;  // the same copies (only the version would differ)
  to.worker_addresses = {"a:1", "b:2", "c:3"};
  const std::vector<PlacementStep> steps = PlanPlacementSwitch(from, to, 2);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].size(), 3u);
  EXPECT_EQ(steps[0][0].placement.version, 2);
}

}  // namespace
}  // namespace dsv3::experts
