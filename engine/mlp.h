#ifndef DSV3_ENGINE_MLP_H_
#define DSV3_ENGINE_MLP_H_

#include <cstdint>

#include "engine/model_weights.h"

namespace dsv3::engine {

// y[m, hidden] = down(silu(gate(x)) * up(x)) for x[m, hidden].
void SwiGluForward(const MlpWeights& w, const float* x, int64_t m, float* y);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MLP_H_
