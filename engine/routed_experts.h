#ifndef DSV3_ENGINE_ROUTED_EXPERTS_H_
#define DSV3_ENGINE_ROUTED_EXPERTS_H_

// Where routed experts run. The MoE layer computes the gate and the shared expert itself and
// hands the (token, expert, weight) triples to a RoutedExpertExecutor: in-process
// (LocalExpertExecutor) or, in the serving cluster, remote expert workers.

#include <cstdint>

#include "absl/status/status.h"
#include "engine/model_weights.h"

namespace dsv3::engine {

class RoutedExpertExecutor {
 public:
  virtual ~RoutedExpertExecutor() = default;
  // For every row t < rows and slot i < top_k:
  //   out[t, :] += weights[t, i] * Expert(layer, experts[t, i])(x[t, :])
  // with x, out: [rows, hidden]; experts, weights: [rows, top_k]. `layer` numbers main layers
  // from 0 and MTP layers after them (num_hidden_layers + k).
  virtual absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden,
                           int64_t top_k, const int32_t* experts, const float* weights,
                           float* out) = 0;
};

// Runs the experts from the model's own weights, batching the rows that chose the same expert.
class LocalExpertExecutor final : public RoutedExpertExecutor {
 public:
  explicit LocalExpertExecutor(const ModelWeights* weights) : weights_(weights) {}
  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, const float* weights, float* out) override;

 private:
  const ModelWeights* weights_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_ROUTED_EXPERTS_H_
