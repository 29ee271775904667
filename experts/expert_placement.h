#ifndef DSV3_EXPERTS_EXPERT_PLACEMENT_H_
#define DSV3_EXPERTS_EXPERT_PLACEMENT_H_

// Which expert worker holds each routed expert of each MoE layer, with replicas: the map an
// attention worker routes by, an expert worker loads by, and the EPLB rebalancer (dsv3-rebalancer)
// rewrites. Versioned: every change gets a higher version (dsv3.v1.ExpertPlacement on the
// wire, placement_proto.h).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace dsv3::experts {

struct ExpertPlacement {
  struct Layer {
    int64_t layer = 0;  // model layer index (main layers, then MTP layers after them)
    // replicas[e]: the workers holding expert e of this layer (at least one each).
    std::vector<std::vector<int32_t>> replicas;
  };

  int64_t version = 0;
  int32_t num_workers = 0;
  std::vector<Layer> layers;  // ascending by layer
  // Worker index -> its gRPC address, where known (empty otherwise).
  std::vector<std::string> worker_addresses;

  // The layer's entry, or null when `layer` is not a MoE layer of this map.
  const Layer* Find(int64_t layer) const;
  // The (layer, expert) pairs worker `w` holds, ascending.
  std::vector<std::pair<int64_t, int64_t>> ExpertsOf(int32_t w) const;
  // Copies (slots) held per worker, summed over layers.
  std::vector<int64_t> SlotsPerWorker() const;
  // Every layer of `moe_layers` present with `num_experts` experts, each with >= 1 replica
  // on a valid, distinct worker.
  absl::Status Validate(const std::vector<int64_t>& moe_layers, int64_t num_experts) const;
};

// The placement every worker computes alike without being told (version 1): experts split
// into `num_workers` contiguous ranges. With group-limited routing (n_group > 1) whole
// groups go to a worker when there are at least as many groups as workers, so a token's
// experts (at most topk_group groups) live on at most topk_group workers; with more workers
// than groups each group is split over as few workers as possible.
ExpertPlacement DefaultExpertPlacement(const std::vector<int64_t>& moe_layers, int64_t num_experts,
                                       int64_t n_group, int32_t num_workers);

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_EXPERT_PLACEMENT_H_
