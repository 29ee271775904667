#ifndef DSV3_EXPERTS_REBALANCE_PLAN_H_
#define DSV3_EXPERTS_REBALANCE_PLAN_H_

// The EPLB rebalancer's decisions, apart from its threads and RPCs (expert_rebalancer.h):
// the load window, whether a proposal is worth applying, the safe two-step switch to a new
// placement, and the copies a failover adds.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dsv3/v1/expert.pb.h"
#include "experts/eplb.h"
#include "experts/expert_placement.h"

namespace dsv3::experts {

// The tokens per (layer, expert) reported over a window, summed over workers (a replicated
// expert's tokens come from each worker holding a copy).
class ExpertLoadWindow {
 public:
  void Add(const v1::ExpertLoadReport& report);
  int64_t total() const { return total_; }
  // The window as RebalanceExperts' input over `placement`'s layers and experts (zeros where
  // nothing was reported; reports beyond them are left out), and a fresh window.
  ExpertLoad Take(const ExpertPlacement& placement);

 private:
  std::map<int64_t, std::map<int64_t, int64_t>> tokens_;  // layer -> expert -> tokens
  int64_t total_ = 0;
};

// One interval's decision.
struct RebalanceDecision {
  int64_t tokens = 0;         // routed (token, expert) pairs in the window
  Imbalance current;          // the placement in effect on the window's load
  Imbalance proposed;         // RebalanceExperts' placement on the same load
  ExpertPlacement placement;  // the proposal (version new_version)
  bool apply = false;
  std::string reason;  // why (not), with the figures, for the log
};
// InvalidArgument when RebalanceExperts refuses the input; `redundant_per_layer` is clamped
// to what fits (each worker holds an expert at most once).
absl::StatusOr<RebalanceDecision> DecideRebalance(const ExpertPlacement& current,
                                                  const ExpertLoad& load,
                                                  int32_t redundant_per_layer, int64_t new_version,
                                                  int64_t min_tokens, double min_gain);

// One ApplyPlacement call.
struct PlacementApply {
  int32_t worker = 0;
  ExpertPlacement placement;
};
// A round of calls made in parallel; the next round starts when all of them succeeded.
using PlacementStep = std::vector<PlacementApply>;
// The safe switch from `from` to `to` (see above): the load step (one call per worker that
// gains experts; none when no worker does), then the switch step (`to` to every worker).
// Versions first_version, first_version + 1, ...; `to` gets the highest. Both maps must have
// the same layers, experts and workers; worker_addresses are `to`'s.
std::vector<PlacementStep> PlanPlacementSwitch(const ExpertPlacement& from,
                                               const ExpertPlacement& to, int64_t first_version);

// Failover: `current` plus, for every expert whose copies are all on workers with
// gone[w], one copy on the live[w] worker holding the fewest copies of that layer. `added`
// (optional) gets how many copies were added; 0 (and `current` unchanged) when nothing needs
// one or no worker is live.
ExpertPlacement AddCopiesForGoneWorkers(const ExpertPlacement& current,
                                        const std::vector<bool>& live,
                                        const std::vector<bool>& gone, int64_t* added);

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_REBALANCE_PLAN_H_
