// EPLB: replicate the heaviest experts, pack the copies to balance tokens per worker.

#include "experts/eplb.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "experts/expert_placement.h"

namespace dsv3::experts {
namespace {

std::vector<int64_t> Layers(int64_t n, int64_t first = 3) {
  std::vector<int64_t> layers(static_cast<size_t>(n));
  std::iota(layers.begin(), layers.end(), first);
  return layers;
}

ExpertLoad Uniform(const std::vector<int64_t>& layers, int64_t num_experts, double tokens) {
  return {layers,
          std::vector<std::vector<double>>(
              layers.size(), std::vector<double>(static_cast<size_t>(num_experts), tokens))};
}

// The properties every placement RebalanceExperts returns must have.
void ExpectWellFormed(const ExpertPlacement& p, const ExpertLoad& load, int32_t num_workers,
                      int32_t redundant) {
  std::vector<int64_t> layers = load.layers;
  std::sort(layers.begin(), layers.end());
  const int64_t num_experts = static_cast<int64_t>(load.tokens[0].size());
  ASSERT_TRUE(p.Validate(layers, num_experts).ok()) << p.Validate(layers, num_experts);
  ASSERT_EQ(p.num_workers, num_workers);
  const int64_t slots = num_experts + redundant;
  std::vector<int64_t> total(static_cast<size_t>(num_workers), 0);
  for (const ExpertPlacement::Layer& l : p.layers) {
    std::vector<int64_t> per_worker(static_cast<size_t>(num_workers), 0);
    int64_t copies = 0;
    for (const std::vector<int32_t>& r : l.replicas) {
      ASSERT_GE(r.size(), 1u);
      ASSERT_LE(r.size(), static_cast<size_t>(num_workers));
      ASSERT_TRUE(std::is_sorted(r.begin(), r.end()));
      for (int32_t w : r) ++per_worker[static_cast<size_t>(w)];
      copies += static_cast<int64_t>(r.size());
    }
    EXPECT_EQ(copies, slots) << "layer " << l.layer;
    // Equal slots per worker, the remainder one each.
    for (int64_t n : per_worker) {
      EXPECT_TRUE(n == slots / num_workers || n == slots / num_workers + 1)
          << "layer " << l.layer << ": " << n << " slots";
    }
    for (size_t w = 0; w < per_worker.size(); ++w) total[w] += per_worker[w];
  }
  // The spare slots rotate over layers, so totals are even too.
  const auto [lo, hi] = std::minmax_element(total.begin(), total.end());
  EXPECT_LE(*hi - *lo, 1);
  EXPECT_EQ(p.SlotsPerWorker(), total);
}

TEST(EplbTest, UniformLoadStaysPerfectlyBalanced) {
  const ExpertLoad load = Uniform(Layers(4), 64, 100);
  for (int32_t redundant : {0, 4, 8, 16}) {
    absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, 4, redundant, 2);
    ASSERT_TRUE(p.ok()) << p.status();
    ExpectWellFormed(*p, load, 4, redundant);
    const Imbalance im = MeasureImbalance(*p, load);
    EXPECT_NEAR(im.overall, 1.0, 1e-12) << redundant;
    EXPECT_NEAR(im.per_step, 1.0, 1e-12) << redundant;
    for (double v : im.per_layer) EXPECT_NEAR(v, 1.0, 1e-12);
    EXPECT_EQ(p->version, 2);
  }
}

TEST(EplbTest, HotExpertGetsOneReplicaPerWorker) {
  ExpertLoad load = Uniform(Layers(2), 64, 10);
  load.tokens[0][5] = 10000;
  load.tokens[1][40] = 10000;
  absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, 4, 8, 7);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectWellFormed(*p, load, 4, 8);
  // Capped at one copy per worker (3 spare slots); the 5 other spare slots go to 5 other
  // experts.
  EXPECT_EQ(p->layers[0].replicas[5], (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(p->layers[1].replicas[40], (std::vector<int32_t>{0, 1, 2, 3}));
  for (const ExpertPlacement::Layer& l : p->layers) {
    int replicated = 0;
    for (const auto& r : l.replicas) replicated += r.size() > 1 ? 1 : 0;
    EXPECT_EQ(replicated, 6);
  }
  // The default placement puts 10000 + 150 of a layer's 10630 tokens on one worker; EPLB
  // spreads them.
  const ExpertPlacement def = DefaultExpertPlacement(load.layers, 64, 8, 4);
  EXPECT_GT(MeasureImbalance(def, load).per_step, 3.5);
  EXPECT_LT(WorkerImbalance(*p, load), 1.01);
  EXPECT_LT(MeasureImbalance(*p, load).per_step, 1.01);
}

TEST(EplbTest, ZipfSkewedLoadBeatsDefaultPlacement) {
  // 64 experts in 8 groups, 8 layers (the bench preset), Zipf s=1.2 shuffled per layer.
  const ExpertLoad load = ZipfExpertLoad(Layers(8), 64, 1.2, 8192.0 * 8, 42);
  const ExpertPlacement def = DefaultExpertPlacement(load.layers, 64, 8, 4);
  const Imbalance before = MeasureImbalance(def, load);
  absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, 4, 8, 2);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectWellFormed(*p, load, 4, 8);
  const Imbalance after = MeasureImbalance(*p, load);
  EXPECT_LT(after.overall, before.overall);
  EXPECT_LT(after.per_step, before.per_step);
  for (size_t i = 0; i < after.per_layer.size(); ++i) {
    EXPECT_LT(after.per_layer[i], before.per_layer[i]) << "layer " << load.layers[i];
  }
  // Concrete: the default is badly skewed here; EPLB is within a few percent of even.
  EXPECT_GT(before.per_step, 1.3);
  EXPECT_LT(after.per_step, 1.05);
  EXPECT_LT(after.overall, 1.02);
}

TEST(EplbTest, NeverWorseThanDefaultAcrossShapes) {
  for (double s : {1.0, 1.2, 1.5}) {
    for (int32_t workers : {2, 4, 8}) {
      for (int32_t redundant : {0, workers, 2 * workers}) {
        const ExpertLoad load = ZipfExpertLoad(Layers(8), 64, s, 65536, 7);
        const Imbalance before =
            MeasureImbalance(DefaultExpertPlacement(load.layers, 64, 8, workers), load);
        absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, workers, redundant, 2);
        ASSERT_TRUE(p.ok()) << p.status();
        ExpectWellFormed(*p, load, workers, redundant);
        const Imbalance after = MeasureImbalance(*p, load);
        EXPECT_LT(after.per_step, before.per_step)
            << "s=" << s << " workers=" << workers << " redundant=" << redundant;
        EXPECT_LE(after.overall, before.overall)
            << "s=" << s << " workers=" << workers << " redundant=" << redundant;
      }
    }
  }
}

TEST(EplbTest, WellFormedOnRandomShapesAndLoads) {
  // Small shapes with zeros and ties reach the corner where every worker with a free slot
  // already holds the expert to place.
  std::mt19937_64 rng(1234);
  for (int trial = 0; trial < 400; ++trial) {
    const int32_t workers = 1 + static_cast<int32_t>(rng() % 7);
    const int64_t experts = 1 + static_cast<int64_t>(rng() % 12);
    const int32_t redundant = static_cast<int32_t>(rng() % (experts * (workers - 1) + 1));
    ExpertLoad load;
    load.layers = Layers(1 + static_cast<int64_t>(rng() % 3));
    for (size_t l = 0; l < load.layers.size(); ++l) {
      std::vector<double> t(static_cast<size_t>(experts));
      for (double& v : t) v = (rng() % 3 == 0) ? 0.0 : static_cast<double>(rng() % 1000);
      load.tokens.push_back(t);
    }
    absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, workers, redundant, 9);
    ASSERT_TRUE(p.ok()) << p.status() << " workers=" << workers << " experts=" << experts
                        << " redundant=" << redundant;
    ExpectWellFormed(*p, load, workers, redundant);
    if (HasFatalFailure()) return;
  }
}

TEST(EplbTest, LayersComeOutAscendingAndDeterministic) {
  ExpertLoad load = ZipfExpertLoad({9, 2, 5}, 16, 1.5, 1000, 3);
  absl::StatusOr<ExpertPlacement> a = RebalanceExperts(load, 4, 4, 5);
  absl::StatusOr<ExpertPlacement> b = RebalanceExperts(load, 4, 4, 5);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->layers.size(), 3u);
  EXPECT_EQ(a->layers[0].layer, 2);
  EXPECT_EQ(a->layers[1].layer, 5);
  EXPECT_EQ(a->layers[2].layer, 9);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a->layers[i].replicas, b->layers[i].replicas);
  // Layer 2's loads are load.tokens[1]: rebalancing that layer alone gives the same map.
  absl::StatusOr<ExpertPlacement> only = RebalanceExperts({{2}, {load.tokens[1]}}, 4, 4, 5);
  ASSERT_TRUE(only.ok());
  EXPECT_EQ(only->layers[0].replicas, a->layers[0].replicas);
}

TEST(EplbTest, ReplicationMinimisesTheHeaviestReplica) {
  // Greedy against every split of the slots, on small random loads.
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + rng() % 4;
    const int32_t max_replicas = 1 + static_cast<int32_t>(rng() % 4);
    const int64_t slots = static_cast<int64_t>(n + rng() % (n * (max_replicas - 1) + 1));
    std::vector<double> loads(n);
    for (double& v : loads) v = static_cast<double>(rng() % 100);
    const std::vector<int32_t> counts = eplb_internal::ReplicateExperts(loads, slots, max_replicas);
    ASSERT_EQ(counts.size(), n);
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), slots);
    double greedy = 0;
    for (size_t e = 0; e < n; ++e) {
      ASSERT_GE(counts[e], 1);
      ASSERT_LE(counts[e], max_replicas);
      greedy = std::max(greedy, loads[e] / counts[e]);
    }
    double best = 1e300;
    std::vector<int32_t> c(n, 1);
    std::function<void(size_t, int64_t)> search = [&](size_t e, int64_t left) {
      if (e == n) {
        if (left != 0) return;
        double worst = 0;
        for (size_t k = 0; k < n; ++k) worst = std::max(worst, loads[k] / c[k]);
        best = std::min(best, worst);
        return;
      }
      for (int32_t k = 1; k <= max_replicas && k <= left; ++k) {
        c[e] = k;
        search(e + 1, left - k);
      }
    };
    search(0, slots);
    EXPECT_DOUBLE_EQ(greedy, best) << "trial " << trial;
  }
}

TEST(EplbTest, PackMovesACopyWhenOnlyHoldersHaveRoom) {
  // Copies, heaviest first: A=10 -> w0; B, C, D (1 each) -> w1, now full; X (0.5) -> w0; the
  // second X finds room only on w0, which has X. A copy moves from w1 to w0 to make room.
  absl::StatusOr<std::vector<std::vector<int32_t>>> r =
      eplb_internal::PackReplicas({10, 1, 1, 1, 1}, {1, 1, 1, 1, 2}, {3, 3});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[4], (std::vector<int32_t>{0, 1}));
  EXPECT_EQ((*r)[0], (std::vector<int32_t>{0}));
  std::vector<int> per_worker(2, 0);
  for (size_t e = 0; e < r->size(); ++e) {
    EXPECT_EQ((*r)[e].size(), e == 4 ? 2u : 1u) << e;
    for (int32_t w : (*r)[e]) ++per_worker[static_cast<size_t>(w)];
  }
  EXPECT_EQ(per_worker, (std::vector<int>{3, 3}));
}

TEST(EplbTest, WorkerImbalanceSplitsReplicatedExpertsEvenly) {
  ExpertPlacement p;
  p.num_workers = 2;
  p.layers = {{0, {{0, 1}, {0}, {1}}}, {1, {{0}, {0}, {1}}}};
  ExpertLoad load{{0, 1}, {{4, 2, 6}, {1, 1, 0}}};
  // Layer 0: w0 = 2 + 2 = 4, w1 = 2 + 6 = 8. Layer 1: w0 = 2, w1 = 0. Totals 6, 8.
  const Imbalance im = MeasureImbalance(p, load);
  EXPECT_EQ(im.tokens_per_worker, (std::vector<double>{6, 8}));
  EXPECT_DOUBLE_EQ(im.overall, 8.0 / 7.0);
  EXPECT_DOUBLE_EQ(WorkerImbalance(p, load), 8.0 / 7.0);
  ASSERT_EQ(im.per_layer.size(), 2u);
  EXPECT_DOUBLE_EQ(im.per_layer[0], 8.0 / 6.0);
  EXPECT_DOUBLE_EQ(im.per_layer[1], 2.0);
  EXPECT_DOUBLE_EQ(im.per_step, (8.0 + 2.0) / (6.0 + 1.0));
}

TEST(EplbTest, HierarchicalKeepsEachGroupOnOneNode) {
  const ExpertLoad load = ZipfExpertLoad(Layers(8), 64, 1.2, 65536, 11);
  EplbOptions opts;
  opts.num_nodes = 2;
  opts.num_groups = 8;
  absl::StatusOr<ExpertPlacement> p = RebalanceExperts(load, 4, 8, 3, opts);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectWellFormed(*p, load, 4, 8);
  for (const ExpertPlacement::Layer& l : p->layers) {
    for (int64_t g = 0; g < 8; ++g) {
      std::set<int32_t> nodes;
      for (int64_t e = g * 8; e < g * 8 + 8; ++e) {
        for (int32_t w : l.replicas[static_cast<size_t>(e)]) nodes.insert(w / 2);
      }
      EXPECT_EQ(nodes.size(), 1u) << "layer " << l.layer << " group " << g;
    }
  }
  const double before =
      MeasureImbalance(DefaultExpertPlacement(load.layers, 64, 8, 4), load).per_step;
  EXPECT_LT(MeasureImbalance(*p, load).per_step, before);
}

TEST(EplbTest, BadInputsAreInvalidArgument) {
  const ExpertLoad good = Uniform(Layers(2), 8, 1);
  auto expect_bad = [](const absl::StatusOr<ExpertPlacement>& p, const std::string& what) {
    ASSERT_FALSE(p.ok()) << what;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_NE(p.status().message().find("EPLB"), std::string::npos) << p.status();
  };
  ASSERT_TRUE(RebalanceExperts(good, 2, 8, 2).ok());  // the largest that fits: 16 copies
  expect_bad(RebalanceExperts(good, 2, 9, 2), "more copies than workers can hold");
  expect_bad(RebalanceExperts(good, 0, 0, 2), "no workers");
  expect_bad(RebalanceExperts(good, -3, 0, 2), "negative workers");
  expect_bad(RebalanceExperts(good, 2, -1, 2), "negative redundant");
  expect_bad(RebalanceExperts(good, 1, 1, 2), "replica on a single worker");
  expect_bad(RebalanceExperts(good, 2, 0, 0), "version 0");
  expect_bad(RebalanceExperts(ExpertLoad{}, 2, 0, 2), "no layers");
  expect_bad(RebalanceExperts({{1, 2}, {{1, 1}}}, 2, 0, 2), "layers vs tokens");
  expect_bad(RebalanceExperts({{1, 1}, {{1, 1}, {1, 1}}}, 2, 0, 2), "duplicate layer");
  expect_bad(RebalanceExperts({{1, 2}, {{1, 1}, {1, 1, 1}}}, 2, 0, 2), "ragged");
  expect_bad(RebalanceExperts({{1}, {{}}}, 2, 0, 2), "no experts");
  expect_bad(RebalanceExperts({{1}, {{1, -1}}}, 2, 0, 2), "negative load");
  expect_bad(RebalanceExperts({{1}, {{1, std::nan("")}}}, 2, 0, 2), "NaN load");
  EplbOptions h;
  h.num_nodes = 2;
  h.num_groups = 3;  // does not divide 8 experts
  expect_bad(RebalanceExperts(good, 4, 0, 2, h), "groups vs experts");
  h.num_groups = 4;
  expect_bad(RebalanceExperts(good, 3, 0, 2, h), "workers vs nodes");
  expect_bad(RebalanceExperts(good, 4, 1, 2, h), "redundant vs nodes");
  expect_bad(RebalanceExperts(good, 2, 2, 2, h), "one worker per node cannot replicate");
  h.num_nodes = 0;
  expect_bad(RebalanceExperts(good, 4, 0, 2, h), "zero nodes");
}

}  // namespace
}  // namespace dsv3::experts
