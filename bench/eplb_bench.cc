// EPLB bench: load imbalance (max/mean tokens per expert worker) of the default placement vs
// RebalanceExperts on Zipf-skewed synthetic loads, and how long RebalanceExperts takes.
// usage: eplb_bench [REPS]  (timing repetitions per row, default 21; the median is printed)
//
// Loads: per MoE layer, 8192 tokens x top-8 = 65536 (token, expert) pairs spread over the
// experts with Zipf weights 1/k^s in an order shuffled per layer (seed 2025). Two imbalance
// figures: "total" = max/mean over workers of the tokens summed over layers; "step" = sum over
// layers of the busiest worker / sum of the means, what a forward step waits for. "floor": a
// lower bound on "step" for any placement with the same slots (StepFloor).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "experts/eplb.h"
#include "experts/expert_placement.h"

namespace {

using dsv3::experts::DefaultExpertPlacement;
using dsv3::experts::EplbOptions;
using dsv3::experts::ExpertLoad;
using dsv3::experts::ExpertPlacement;
using dsv3::experts::Imbalance;
using dsv3::experts::MeasureImbalance;
using dsv3::experts::RebalanceExperts;

struct Shape {
  const char* name;
  int64_t experts;
  int64_t groups;
  int64_t layers;
  int64_t first_layer;
};

// Lower bound on Imbalance::per_step over placements with `redundant` spare slots per layer:
// per layer, the busiest worker carries at least the mean, and at least the heaviest copy plus
// the lightest others that fill the slots it must take (the replication step makes the heaviest
// copy as light as any split can).
double StepFloor(const ExpertLoad& load, int32_t workers, int32_t redundant) {
  double sum_floor = 0, sum_mean = 0;
  for (const std::vector<double>& t : load.tokens) {
    const int64_t slots = static_cast<int64_t>(t.size()) + redundant;
    const std::vector<int32_t> counts =
        dsv3::experts::eplb_internal::ReplicateExperts(t, slots, workers);
    std::vector<double> copies;
    double total = 0;
    for (size_t e = 0; e < t.size(); ++e) {
      for (int32_t r = 0; r < counts[e]; ++r) copies.push_back(t[e] / counts[e]);
      total += t[e];
    }
    std::sort(copies.begin(), copies.end());
    double busiest = copies.back();
    for (int64_t k = 0; k + 1 < slots / workers; ++k) busiest += copies[static_cast<size_t>(k)];
    sum_floor += std::max(busiest, total / workers);
    sum_mean += total / workers;
  }
  return sum_floor / sum_mean;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 21;
  const Shape shapes[] = {{"DeepSeek-V3: 256 exp., 8 groups, 58 layers", 256, 8, 58, 3},
                          {"bench preset: 64 exp., 8 groups, 8 layers", 64, 8, 8, 1}};
  const double zipf[] = {1.0, 1.5};
  const int32_t worker_counts[] = {2, 4, 8};
  std::printf(
      "| shape | zipf s | workers | redundant/layer | default total | default step | "
      "EPLB total | EPLB step | floor step | EPLB hier. 2 nodes step | RebalanceExperts ms |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Shape& shape : shapes) {
    std::vector<int64_t> layers;
    for (int64_t l = 0; l < shape.layers; ++l) layers.push_back(shape.first_layer + l);
    for (double s : zipf) {
      const ExpertLoad load =
          dsv3::experts::ZipfExpertLoad(layers, shape.experts, s, 8192.0 * 8, 2025);
      for (int32_t workers : worker_counts) {
        const ExpertPlacement def =
            DefaultExpertPlacement(layers, shape.experts, shape.groups, workers);
        const Imbalance before = MeasureImbalance(def, load);
        for (int32_t redundant : {0, workers, 2 * workers}) {
          std::vector<double> ms;
          absl::StatusOr<ExpertPlacement> p;
          for (int r = 0; r < reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            p = RebalanceExperts(load, workers, redundant, 2);
            ms.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
          }
          if (!p.ok() || !p->Validate(layers, shape.experts).ok()) {
            std::fprintf(stderr, "RebalanceExperts failed: %s\n", p.status().ToString().c_str());
            return 1;
          }
          std::sort(ms.begin(), ms.end());
          const Imbalance after = MeasureImbalance(*p, load);
          std::string hier = "-";
          EplbOptions opts;
          opts.num_nodes = 2;
          opts.num_groups = shape.groups;
          absl::StatusOr<ExpertPlacement> h = RebalanceExperts(load, workers, redundant, 2, opts);
          if (h.ok()) {
            char buf[32];
            std::snprintf(buf, sizeof(buf), "%.3f", MeasureImbalance(*h, load).per_step);
            hier = buf;
          }
          std::printf(
              "| %s | %.1f | %d | %d | %.3f | %.3f | **%.3f** | **%.3f** | %.3f | %s | %.3f |\n",
              shape.name, s, workers, redundant, before.overall, before.per_step, after.overall,
              after.per_step, StepFloor(load, workers, redundant), hier.c_str(), ms[ms.size() / 2]);
        }
      }
    }
  }
  return 0;
}
