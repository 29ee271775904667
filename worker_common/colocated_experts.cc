#include "worker_common/colocated_experts.h"

#include "common/serving_metrics.h"
#include "common/status_macros.h"

namespace dsv3::worker {

ColocatedExpertExecutor::ColocatedExpertExecutor(const engine::Model& model)
    : local_(model.local_expert_executor()), num_experts_(model.config().n_routed_experts) {
  const engine::ModelConfig& c = model.config();
  const int64_t layers = c.num_hidden_layers + c.num_nextn_predict_layers;
  counters_.assign(static_cast<size_t>(layers * num_experts_), nullptr);
  for (int64_t l = 0; l < layers; ++l) {
    const bool moe = l < c.num_hidden_layers ? c.IsMoeLayer(l) : num_experts_ > 0;
    if (!moe) continue;
    for (int64_t e = 0; e < num_experts_; ++e) {
      counters_[static_cast<size_t>(l * num_experts_ + e)] =
          ExpertTokenCounter(Metrics(), static_cast<int>(l), static_cast<int>(e));
    }
  }
}

absl::Status ColocatedExpertExecutor::Run(int64_t layer, const float* x, int64_t rows,
                                          int64_t hidden, int64_t top_k, const int32_t* experts,
                                          engine::ExpertOutputs* outputs,
                                          absl::FunctionRef<void()> overlapped) {
  DSV3_RETURN_IF_ERROR(local_.Run(layer, x, rows, hidden, top_k, experts, outputs, overlapped));
  // Tallied first: one counter update per expert, not per token (prefill batches are large).
  std::vector<int64_t> tally(static_cast<size_t>(num_experts_), 0);
  for (int64_t s = 0; s < rows * top_k; ++s) {
    if (experts[s] >= 0 && experts[s] < num_experts_) ++tally[static_cast<size_t>(experts[s])];
  }
  for (int64_t e = 0; e < num_experts_; ++e) {
    const int64_t i = layer * num_experts_ + e;
    if (tally[static_cast<size_t>(e)] > 0 && i < static_cast<int64_t>(counters_.size()) &&
        counters_[static_cast<size_t>(i)] != nullptr) {
      counters_[static_cast<size_t>(i)]->Increment(
          static_cast<double>(tally[static_cast<size_t>(e)]));
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::worker
