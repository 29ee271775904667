#ifndef DSV3_ENGINE_ROUTED_EXPERTS_H_
#define DSV3_ENGINE_ROUTED_EXPERTS_H_

// Where routed experts run. The MoE layer computes the gate and the shared expert itself and
// hands the (token, expert) slots to a RoutedExpertExecutor: in-process (LocalExpertExecutor)
// or, in the serving cluster, remote expert workers. The executor returns each slot's
// unweighted expert output; MoeForward adds them, weighted, in slot order, so every executor
// gives the same sums.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "engine/model_weights.h"

namespace dsv3::engine {

// Each slot's expert output row and what keeps those rows alive: an executor hands back the
// rows where they landed (its own buffer, or the buffers the all-to-all received into)
// instead of copying them into one array.
struct ExpertOutputs {
  std::vector<const float*> slots;      // [rows * top_k], each `hidden` floats
  std::shared_ptr<const void> storage;  // owns the rows
};

class RoutedExpertExecutor {
 public:
  virtual ~RoutedExpertExecutor() = default;
  // For every row t < rows and slot i < top_k, s = t * top_k + i:
  //   outputs->slots[s][:] = Expert(layer, experts[s])(x[t, :])
  // with x: [rows, hidden], experts: [rows, top_k]. `layer` numbers
  // main layers from 0 and MTP layers after them (num_hidden_layers + k). `overlapped` is
  // called exactly once, on the calling thread, while the experts run (remote executors) or
  // before they do (local): MoeForward computes the shared expert in it. Calls may come
  // concurrently from several threads (different forward steps).
  virtual absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden,
                           int64_t top_k, const int32_t* experts, ExpertOutputs* outputs,
                           absl::FunctionRef<void()> overlapped) = 0;
};

// ys[p, :] = Expert(layer, pair_expert[p])(x[pair_token[p], :]) for p < pairs, batching the
// pairs that chose the same expert into one computation (the busiest experts first, spread
// over the engine's threads). What LocalExpertExecutor and the expert workers run.
absl::Status ComputeExpertPairs(const ModelWeights& weights, int64_t layer, const float* x,
                                int64_t hidden, const int32_t* pair_token,
                                const int32_t* pair_expert, int64_t pairs, float* ys);

// Runs the experts from the model's own weights.
class LocalExpertExecutor final : public RoutedExpertExecutor {
 public:
  explicit LocalExpertExecutor(const ModelWeights* weights) : weights_(weights) {}
  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, ExpertOutputs* outputs,
                   absl::FunctionRef<void()> overlapped) override;

 private:
  const ModelWeights* weights_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_ROUTED_EXPERTS_H_
