#include "engine/routed_experts.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/ops.h"
#include "engine/mlp.h"
#include "engine/thread_pool.h"

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
  std::vector<int64_t> used;  // experts with tokens, the busiest first (dynamic scheduling)
  for (int64_t e = 0; e < n; ++e) {
    if (by_expert[e].empty()) continue;
    if (bank[e].gate.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "routed expert ", e, " of layer ", layer,
          " is not loaded in this process (LoadOptions role/expert selection); route it to the "
          "expert worker that holds it"));
    }
    used.push_back(e);
  }
  std::stable_sort(used.begin(), used.end(), [&](int64_t a, int64_t b) {
    return by_expert[a].size() > by_expert[b].size();
  });

  // Every (token, slot) gets its own output row, so experts run concurrently without sharing
  // an accumulator; the weighted sum below then adds them in slot order, independent of the
  // schedule (batch-invariant up to float rounding of the expert GEMMs themselves).
  // {rows * top_k, hidden}; every slot is routed to exactly one expert, so all rows get written.
  std::unique_ptr<float[]> ys(new float[static_cast<size_t>(rows * top_k * hidden)]);
  ThreadPool& pool = ThreadPool::Default();
  std::vector<std::vector<float>> xs_by_thread(static_cast<size_t>(pool.size()));
  std::vector<std::vector<float>> yo_by_thread(static_cast<size_t>(pool.size()));
  auto run_expert = [&](int64_t idx, int thread) {
    const int64_t e = used[static_cast<size_t>(idx)];
    const std::vector<int64_t>& slots = by_expert[e];
    const int64_t m = static_cast<int64_t>(slots.size());
    std::vector<float>& xs = xs_by_thread[static_cast<size_t>(thread)];
    std::vector<float>& yo = yo_by_thread[static_cast<size_t>(thread)];
    xs.resize(static_cast<size_t>(m * hidden));  // {m, hidden}: the tokens routed to e
    yo.resize(static_cast<size_t>(m * hidden));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&xs[i * hidden], x + (slots[i] / top_k) * hidden, sizeof(float) * hidden);
    }
    SwiGluForward(bank[e], xs.data(), m, yo.data());
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&ys[slots[i] * hidden], &yo[i * hidden], sizeof(float) * hidden);
    }
  };
  if (used.size() == 1) {
    run_expert(0, 0);  // one expert: its projections parallelise over rows instead
  } else {
    pool.ParallelForDynamic(static_cast<int64_t>(used.size()), run_expert);
  }
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < top_k; ++i) {
      Axpy(weights[t * top_k + i], &ys[(t * top_k + i) * hidden], out + t * hidden, hidden);
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::engine
