#ifndef DSV3_ENGINE_MOE_H_
#define DSV3_ENGINE_MOE_H_

// A DeepSeekMoE feed-forward layer: gate (moe_gate.h), shared expert(s) in-process, routed
// experts through a RoutedExpertExecutor. out = sum_i w_i Expert_i(x) + Shared(x).

#include <cstdint>

#include "absl/status/status.h"
#include "engine/batch.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/routed_experts.h"

namespace dsv3::engine {

// x, out: [rows, hidden]. `trace` (optional) receives the routing.
absl::Status MoeForward(const ModelConfig& config, const MoeWeights& w, int64_t layer,
                        const float* x, int64_t rows, RoutedExpertExecutor& executor, float* out,
                        ForwardTrace::Routing* trace);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MOE_H_
