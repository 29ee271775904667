#include "engine/moe.h"

#include <algorithm>
#include <vector>

#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"
#include "engine/mlp.h"
#include "engine/moe_gate.h"

namespace dsv3::engine {

absl::Status MoeForward(const ModelConfig& config, const MoeWeights& w, int64_t layer,
                        const float* x, int64_t rows, RoutedExpertExecutor& executor, float* out,
                        ForwardTrace::Routing* trace) {
  const int64_t n = config.n_routed_experts;
  const int64_t k = config.num_experts_per_tok;
  const int64_t hidden = config.hidden_size;
  std::vector<float> logits(static_cast<size_t>(rows * n));  // {rows, experts}
  MatMul(x, rows, w.router, logits.data());
  std::vector<int32_t> experts(static_cast<size_t>(rows * k));  // {rows, top_k}
  std::vector<float> weights(static_cast<size_t>(rows * k));
  RouteTokens(config, logits.data(), w.score_bias.empty() ? nullptr : w.score_bias.data(), rows,
              experts.data(), weights.data());
  if (trace != nullptr) {
    trace->experts = experts;
    trace->weights = weights;
  }
  // The routed experts' outputs per slot; the shared expert runs meanwhile (remote executors
  // overlap it with the all-to-all).
  ExpertOutputs ys;
  absl::Status status = executor.Run(layer, x, rows, hidden, k, experts.data(), &ys, [&] {
    if (!w.shared.gate.empty()) {
      SwiGluForward(w.shared, x, rows, out);
    } else {
      std::fill(out, out + rows * hidden, 0.0f);
    }
  });
  if (!status.ok()) return status;
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      Axpy(weights[static_cast<size_t>(t * k + i)], ys.slots[static_cast<size_t>(t * k + i)],
           out + t * hidden, hidden);
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::engine
