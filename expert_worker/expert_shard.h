#ifndef DSV3_EXPERT_WORKER_EXPERT_SHARD_H_
#define DSV3_EXPERT_WORKER_EXPERT_SHARD_H_

// The routed experts one expert worker holds: those the placement in effect assigns to it,
// plus those of the previous placement until the next change (attention workers switch maps
// at their own step boundaries, so tokens routed by the old map may still arrive). Only
// those experts are loaded (engine LoadRole::kRoutedExperts, FP8 kept FP8); a new placement
// loads into a new holding and replaces the old one when complete, while dispatches keep
// being served from the old one.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/model.h"
#include "experts/expert_placement.h"

namespace dsv3::expert {

struct ExpertHolding {
  std::shared_ptr<const engine::Model> model;  // role kRoutedExperts
  experts::ExpertPlacement placement;          // the map in effect
  int64_t experts_held = 0;                    // (layer, expert) pairs loaded
  int64_t expert_bytes = 0;                    // their checkpoint bytes
};

class ExpertShard {
 public:
  // Loads this worker's experts of the default placement (DefaultExpertPlacement) over
  // `num_workers` workers, in the `weights` format (part of config().weight_format), with
  // LoadOptions::bf16_activations and batch_invariant (part of the config's identity too).
  static absl::StatusOr<std::unique_ptr<ExpertShard>> Load(
      const std::string& dir, int32_t worker_index, int32_t num_workers,
      engine::WeightFormat weights = engine::WeightFormat::kAsStored,
      bool bf16_activations = engine::LoadOptions{}.bf16_activations, bool batch_invariant = false);

  std::shared_ptr<const ExpertHolding> current() const;
  // Makes `next` the placement in effect after loading what it assigns to this worker.
  // Versions only go up: an older one is FAILED_PRECONDITION, the same one is a no-op.
  // Serialised; the current holding keeps serving while this loads.
  absl::Status Apply(experts::ExpertPlacement next);

  const engine::ModelConfig& config() const { return config_; }
  const std::vector<int64_t>& moe_layers() const { return moe_layers_; }
  int32_t worker_index() const { return worker_index_; }

 private:
  ExpertShard(std::string dir, engine::ModelConfig config, int32_t worker_index,
              engine::WeightFormat weights, bool bf16_activations, bool batch_invariant);
  absl::StatusOr<std::shared_ptr<const ExpertHolding>> LoadHolding(
      const experts::ExpertPlacement& placement, const experts::ExpertPlacement* previous) const;

  const std::string dir_;
  const engine::ModelConfig config_;
  const int32_t worker_index_;
  const engine::WeightFormat weights_;
  const bool bf16_activations_;
  const bool batch_invariant_;
  std::vector<int64_t> moe_layers_;
  absl::Mutex apply_mu_;  // one Apply at a time
  mutable absl::Mutex mu_;
  std::shared_ptr<const ExpertHolding> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::expert

#endif  // DSV3_EXPERT_WORKER_EXPERT_SHARD_H_
