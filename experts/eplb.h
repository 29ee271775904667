#ifndef DSV3_EXPERTS_EPLB_H_
#define DSV3_EXPERTS_EPLB_H_

// EPLB, the expert-parallel load balancer: from per-expert token counts, a placement of the
// routed experts on the expert workers with redundant replicas of the heaviest experts, so
// that the tokens per worker are as even as the slots allow. The algorithm is the one
// DeepSeek published for DeepSeek-V3 (github.com/deepseek-ai/EPLB), written anew here:
//   1. replicate: every expert starts with one replica; each redundant slot goes to the
//      expert with the largest load / replicas (greedy, which minimises the largest
//      per-replica load);
//   2. pack: the replicas, heaviest (load / replicas) first, each go to the least loaded
//      worker that has a free slot and does not hold that expert yet.
// An attention worker spreads a replicated expert's tokens over its replicas in turn
// (dispatch_plan.h), so a replica carries load / replicas tokens.
//
// The hierarchical variant (EplbOptions::num_nodes > 1) first packs whole expert groups to
// nodes (equal group count per node), then replicates and packs within each node over the
// node's workers, so group-limited routing keeps a token's experts on few nodes.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "experts/expert_placement.h"

namespace dsv3::experts {

// Tokens routed to each expert of each MoE layer over some window (what expert workers
// report), or any other non-negative weight.
struct ExpertLoad {
  std::vector<int64_t> layers;              // MoE layer indices, distinct
  std::vector<std::vector<double>> tokens;  // [layers.size()][num_experts]
};

struct EplbOptions {
  // Hierarchical policy when > 1: num_groups % num_nodes == 0, num_workers % num_nodes == 0,
  // redundant_per_layer % num_nodes == 0; workers [n * W/N, (n+1) * W/N) form node n.
  int32_t num_nodes = 1;
  int64_t num_groups = 1;  // expert groups (n_group); only used by the hierarchical policy
};

// A new placement (version `new_version`, no worker addresses) for `num_workers` expert
// workers holding num_experts + redundant_per_layer copies of each layer's experts. Each layer
// is balanced on its own; which worker takes which of a layer's bins then goes by the tokens
// placed so far, so the totals over layers are even too. Slots per worker differ by at most one
// within a layer, and the spare slots rotate over layers so the totals differ by at most one.
// Every expert keeps at least one replica; no worker holds an expert twice. Deterministic.
// InvalidArgument on bad input (no layers, ragged or negative loads, num_workers <= 0,
// redundant_per_layer < 0 or more copies than num_experts * num_workers, bad hierarchy).
absl::StatusOr<ExpertPlacement> RebalanceExperts(const ExpertLoad& load, int32_t num_workers,
                                                 int32_t redundant_per_layer, int64_t new_version,
                                                 const EplbOptions& options = {});

// Load imbalance of `placement` under `load`: a replicated expert's tokens count evenly on its
// replicas. Layers of `load` missing from `placement`, and experts beyond a placement layer's
// size, are left out.
struct Imbalance {
  // max / mean over workers of the tokens per worker summed over layers (1 = even).
  double overall = 1.0;
  // sum over layers of the busiest worker's tokens / sum over layers of the mean: what a
  // step waits for, since every MoE layer waits for its slowest worker.
  double per_step = 1.0;
  std::vector<double> per_layer;          // max / mean of each layer of `load`
  std::vector<double> tokens_per_worker;  // summed over layers
};
Imbalance MeasureImbalance(const ExpertPlacement& placement, const ExpertLoad& load);
// MeasureImbalance(...).overall.
double WorkerImbalance(const ExpertPlacement& placement, const ExpertLoad& load);

// A synthetic skewed load for tests and benches: in each layer the experts, in an order
// shuffled per layer (seeded, the same on every platform), get tokens_per_layer * (1/k^s) /
// sum_j(1/j^s) tokens for rank k = 1..num_experts (Zipf with exponent s), rounded.
ExpertLoad ZipfExpertLoad(const std::vector<int64_t>& layers, int64_t num_experts, double s,
                          double tokens_per_layer, uint64_t seed);

// The two steps of one layer, exposed for tests.
namespace eplb_internal {

// Replicas per expert: num_slots in all, at least 1 and at most max_replicas each, each spare
// slot to the largest load / replicas (ties: fewest replicas, then lowest expert). Needs
// num_slots in [loads.size(), loads.size() * max_replicas].
std::vector<int32_t> ReplicateExperts(const std::vector<double>& loads, int64_t num_slots,
                                      int32_t max_replicas);

// replicas[e] for counts[e] copies of expert e of weight loads[e] / counts[e] each, packed
// on workers 0..caps.size()-1, worker w taking exactly caps[w] copies, never two of one expert.
// Needs sum(counts) == sum(caps), counts[e] <= caps.size() and caps differing by at most one.
absl::StatusOr<std::vector<std::vector<int32_t>>> PackReplicas(const std::vector<double>& loads,
                                                               const std::vector<int32_t>& counts,
                                                               const std::vector<int64_t>& caps);

}  // namespace eplb_internal

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_EPLB_H_
