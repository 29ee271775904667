#include "engine/routed_experts.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/mlp.h"
#include "engine/scratch.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {

absl::Status ComputeExpertPairs(const ModelWeights& weights, int64_t layer, const float* x,
                                int64_t hidden, const int32_t* pair_token,
                                const int32_t* pair_expert, int64_t pairs, float* ys) {
  const int64_t num_layers = static_cast<int64_t>(weights.layers.size() + weights.mtp.size());
  if (layer < 0 || layer >= num_layers || !weights.Layer(layer).is_moe) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " has no routed experts"));
  }
  const std::vector<MlpWeights>& bank = weights.Layer(layer).moe.experts;
  const int64_t n = static_cast<int64_t>(bank.size());
  std::vector<std::vector<int64_t>> by_expert(static_cast<size_t>(n));  // pair indices
  for (int64_t p = 0; p < pairs; ++p) {
    if (pair_expert[p] < 0 || pair_expert[p] >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert id ", pair_expert[p], " out of range [0, ", n, ")"));
    }
    by_expert[static_cast<size_t>(pair_expert[p])].push_back(p);
  }
  std::vector<int64_t> used;  // experts with tokens, the busiest first (dynamic scheduling)
  for (int64_t e = 0; e < n; ++e) {
    if (by_expert[static_cast<size_t>(e)].empty()) continue;
    if (bank[static_cast<size_t>(e)].gate.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "routed expert ", e, " of layer ", layer,
          " is not loaded in this process (LoadOptions role/expert selection); route it to the "
          "expert worker that holds it"));
    }
    used.push_back(e);
  }
  std::stable_sort(used.begin(), used.end(), [&](int64_t a, int64_t b) {
    return by_expert[static_cast<size_t>(a)].size() > by_expert[static_cast<size_t>(b)].size();
  });

  // Every pair has its own output row, so experts run concurrently without sharing an
  // accumulator.
  ThreadPool& pool = ThreadPool::Default();
  std::vector<std::vector<float>> xs_by_thread(static_cast<size_t>(pool.size()));
  std::vector<std::vector<float>> yo_by_thread(static_cast<size_t>(pool.size()));
  auto run_expert = [&](int64_t idx, int thread) {
    const int64_t e = used[static_cast<size_t>(idx)];
    const std::vector<int64_t>& mine = by_expert[static_cast<size_t>(e)];
    const int64_t m = static_cast<int64_t>(mine.size());
    std::vector<float>& xs = xs_by_thread[static_cast<size_t>(thread)];
    std::vector<float>& yo = yo_by_thread[static_cast<size_t>(thread)];
    xs.resize(static_cast<size_t>(m * hidden));  // {m, hidden}: the tokens routed to e
    yo.resize(static_cast<size_t>(m * hidden));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&xs[static_cast<size_t>(i * hidden)],
                  x + static_cast<int64_t>(pair_token[mine[static_cast<size_t>(i)]]) * hidden,
                  sizeof(float) * static_cast<size_t>(hidden));
    }
    SwiGluForward(bank[static_cast<size_t>(e)], xs.data(), m, yo.data());
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(ys + mine[static_cast<size_t>(i)] * hidden, &yo[static_cast<size_t>(i * hidden)],
                  sizeof(float) * static_cast<size_t>(hidden));
    }
  };
  if (used.size() == 1) {
    run_expert(0, 0);  // one expert: its projections parallelise over rows instead
  } else if (!used.empty()) {
    pool.ParallelForDynamic(static_cast<int64_t>(used.size()), run_expert);
  }
  return absl::OkStatus();
}

absl::Status LocalExpertExecutor::Run(int64_t layer, const float* x, int64_t rows, int64_t hidden,
                                      int64_t top_k, const int32_t* experts, ExpertOutputs* outputs,
                                      absl::FunctionRef<void()> overlapped) {
  overlapped();
  // Slot s = t * top_k + i is pair s: token t, expert experts[s].
  const int64_t n = rows * top_k;
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) tokens[static_cast<size_t>(s)] = static_cast<int32_t>(s / top_k);
  // The outputs' storage is this thread's until the caller drops them (MoeForward, right after
  // the combine); a Run before that gets storage of its own (scratch.h).
  thread_local ScratchSite ys_site;
  auto ys = std::make_shared<Scratch>(ys_site, static_cast<size_t>(n * hidden));
  DSV3_RETURN_IF_ERROR(
      ComputeExpertPairs(*weights_, layer, x, hidden, tokens.data(), experts, n, ys->data()));
  outputs->slots.resize(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) outputs->slots[static_cast<size_t>(s)] = ys->data() + s * hidden;
  outputs->storage = std::move(ys);
  return absl::OkStatus();
}

}  // namespace dsv3::engine
