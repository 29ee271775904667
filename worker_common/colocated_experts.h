#ifndef DSV3_WORKER_COMMON_COLOCATED_EXPERTS_H_
#define DSV3_WORKER_COMMON_COLOCATED_EXPERTS_H_

// Routed experts run in this attention worker (no expert workers): the model's own
// LocalExpertExecutor, counting the tokens each (layer, expert) computes in
// dsv3_expert_tokens_total as expert workers do, so EPLB dashboards read the same either way.

#include <memory>
#include <vector>

#include "common/metrics.h"
#include "engine/model.h"
#include "engine/routed_experts.h"

namespace dsv3::worker {

class ColocatedExpertExecutor final : public engine::RoutedExpertExecutor {
 public:
  explicit ColocatedExpertExecutor(const engine::Model& model);
  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, engine::ExpertOutputs* outputs,
                   absl::FunctionRef<void()> overlapped) override;

 private:
  engine::LocalExpertExecutor& local_;
  const int64_t num_experts_;
  // [layer * num_experts + expert]: the counter (null for non-MoE layers or over the bound).
  std::vector<metrics::Counter*> counters_;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_COLOCATED_EXPERTS_H_
