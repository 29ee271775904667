#include "expert_worker/expert_shard.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace dsv3::expert {

ExpertShard::ExpertShard(std::string dir, engine::ModelConfig config, int32_t worker_index,
                         engine::WeightFormat weights, bool bf16_activations, bool batch_invariant)
    : dir_(std::move(dir)),
      config_(std::move(config)),
      worker_index_(worker_index),
      weights_(weights),
      bf16_activations_(bf16_activations),
      batch_invariant_(batch_invariant) {
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (config_.IsMoeLayer(l)) moe_layers_.push_back(l);
  }
  for (int64_t k = 0; k < config_.num_nextn_predict_layers; ++k) {
    if (config_.n_routed_experts > 0) moe_layers_.push_back(config_.num_hidden_layers + k);
  }
}

absl::StatusOr<std::unique_ptr<ExpertShard>> ExpertShard::Load(
    const std::string& dir, int32_t worker_index, int32_t num_workers, engine::WeightFormat weights,
    bool bf16_activations, bool batch_invariant) {
  if (num_workers < 1 || worker_index < 0 || worker_index >= num_workers) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard index ", worker_index, " is not in [0, ", num_workers, ")"));
  }
  DSV3_ASSIGN_OR_RETURN(engine::ModelConfig config, engine::LoadModelConfig(dir));
  if (config.n_routed_experts <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " has no routed experts"));
  }
  if (weights != engine::WeightFormat::kAsStored) {
    config.weight_format = std::string(engine::WeightFormatName(weights));
  }
  config.bf16_activations = bf16_activations;
  config.batch_invariant = batch_invariant;
  std::unique_ptr<ExpertShard> shard(
      new ExpertShard(dir, config, worker_index, weights, bf16_activations, batch_invariant));
  experts::ExpertPlacement placement = experts::DefaultExpertPlacement(
      shard->moe_layers_, config.n_routed_experts, config.n_group, num_workers);
  DSV3_ASSIGN_OR_RETURN(auto holding, shard->LoadHolding(placement, nullptr));
  absl::MutexLock lock(&shard->mu_);
  shard->current_ = std::move(holding);
  return shard;
}

absl::StatusOr<std::shared_ptr<const ExpertHolding>> ExpertShard::LoadHolding(
    const experts::ExpertPlacement& placement, const experts::ExpertPlacement* previous) const {
  DSV3_RETURN_IF_ERROR(placement.Validate(moe_layers_, config_.n_routed_experts));
  if (worker_index_ >= placement.num_workers) {
    return absl::InvalidArgumentError(absl::StrCat("placement has ", placement.num_workers,
                                                   " workers; this is worker ", worker_index_));
  }
  std::set<std::pair<int64_t, int64_t>> keys;
  for (const auto& k : placement.ExpertsOf(worker_index_)) keys.insert(k);
  if (previous != nullptr) {
    for (const auto& k : previous->ExpertsOf(worker_index_)) keys.insert(k);
  }
  engine::LoadOptions options;
  options.role = engine::LoadRole::kRoutedExperts;
  options.load_mtp = config_.num_nextn_predict_layers > 0;
  options.weights = weights_;
  options.bf16_activations = bf16_activations_;
  options.batch_invariant = batch_invariant_;
  for (const auto& [layer, expert] : keys) options.experts.push_back({layer, expert});
  if (options.experts.empty()) {
    // Nothing assigned (more workers than experts): hold nothing, answer nothing.
    DSV3_LOG(WARNING) << "placement " << placement.version << " assigns no expert to worker "
                      << worker_index_;
  }
  DSV3_ASSIGN_OR_RETURN(auto model, engine::Model::Load(dir_, options));
  auto holding = std::make_shared<ExpertHolding>();
  holding->experts_held = static_cast<int64_t>(keys.size());
  holding->expert_bytes = model->weights().bytes;
  holding->model = std::move(model);
  holding->placement = placement;
  DSV3_LOG(INFO) << "placement " << placement.version << ": holding " << holding->experts_held
                 << " experts, " << holding->expert_bytes << " bytes";
  return std::shared_ptr<const ExpertHolding>(std::move(holding));
}

std::shared_ptr<const ExpertHolding> ExpertShard::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Status ExpertShard::Apply(experts::ExpertPlacement next) {
  absl::MutexLock apply(&apply_mu_);
  std::shared_ptr<const ExpertHolding> now = current();
  if (next.version == now->placement.version) return absl::OkStatus();
  if (next.version < now->placement.version) {
    return absl::FailedPreconditionError(absl::StrCat("placement version ", next.version,
                                                      " is older than the one in effect (",
                                                      now->placement.version, ")"));
  }
  DSV3_ASSIGN_OR_RETURN(auto holding, LoadHolding(next, &now->placement));
  absl::MutexLock lock(&mu_);
  current_ = std::move(holding);
  return absl::OkStatus();
}

}  // namespace dsv3::expert
