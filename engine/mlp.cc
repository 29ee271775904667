#include "engine/mlp.h"

#include <vector>

#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {

void SwiGluForward(const MlpWeights& w, const float* x, int64_t m, float* y) {
  const int64_t inter = w.gate.out_features;
  std::vector<float> g(static_cast<size_t>(m * inter));  // {m, inter}
  std::vector<float> u(static_cast<size_t>(m * inter));  // {m, inter}
  MatMul(x, m, w.gate, g.data());
  MatMul(x, m, w.up, u.data());
  SiluMul(g.data(), u.data(), m * inter, g.data());
  MatMul(g.data(), m, w.down, y);
}

}  // namespace dsv3::engine
