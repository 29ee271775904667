#include "engine/routed_experts.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/ops.h"
#include "engine/mlp.h"

namespace dsv3::engine {

absl::Status LocalExpertExecutor::Run(int64_t layer, const float* x, int64_t rows, int64_t hidden,
                                      int64_t top_k, const int32_t* experts,
                                      const float* weights, float* out) {
  const int64_t num_layers =
      static_cast<int64_t>(weights_->layers.size() + weights_->mtp.size());
  if (layer < 0 || layer >= num_layers || !weights_->Layer(layer).is_moe) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " has no routed experts"));
  }
  const std::vector<MlpWeights>& bank = weights_->Layer(layer).moe.experts;
  const int64_t n = static_cast<int64_t>(bank.size());
  std::vector<std::vector<int64_t>> by_expert(static_cast<size_t>(n));  // slots t * top_k + i
  for (int64_t s = 0; s < rows * top_k; ++s) {
    if (experts[s] < 0 || experts[s] >= n) {
      return absl::InvalidArgumentError(absl::StrCat("expert id ", experts[s], " out of range"));
    }
    by_expert[experts[s]].push_back(s);
  }
  std::vector<float> xs, ys;
  for (int64_t e = 0; e < n; ++e) {
    const std::vector<int64_t>& slots = by_expert[e];
    if (slots.empty()) continue;
    const int64_t m = static_cast<int64_t>(slots.size());
    xs.resize(static_cast<size_t>(m * hidden));  // {m, hidden}
    ys.resize(static_cast<size_t>(m * hidden));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&xs[i * hidden], x + (slots[i] / top_k) * hidden, sizeof(float) * hidden);
    }
    SwiGluForward(bank[e], xs.data(), m, ys.data());
    for (int64_t i = 0; i < m; ++i) {
      Axpy(weights[slots[i]], &ys[i * hidden], out + (slots[i] / top_k) * hidden, hidden);
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::engine
