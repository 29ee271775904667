#include "experts/dispatch_plan.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsv3::experts {

absl::StatusOr<DispatchPlan> PlanDispatch(const ExpertPlacement::Layer& layer,
                                          const int32_t* experts, int64_t rows, int64_t top_k,
                                          int32_t num_workers, const std::vector<bool>& worker_up,
                                          uint64_t spread_seed) {
  DispatchPlan plan;
  plan.rows = rows;
  plan.top_k = top_k;
  plan.destinations.resize(static_cast<size_t>(num_workers));
  plan.slot_worker.resize(static_cast<size_t>(rows * top_k));
  plan.slot_pair.resize(static_cast<size_t>(rows * top_k));
  const int64_t num_experts = static_cast<int64_t>(layer.replicas.size());
  std::vector<uint64_t> turn(static_cast<size_t>(num_experts), spread_seed);
  std::vector<int32_t> live;
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < top_k; ++i) {
      const int64_t s = t * top_k + i;
      const int32_t e = experts[s];
      if (e < 0 || e >= num_experts) {
        return absl::InvalidArgumentError(absl::StrCat("expert id ", e, " out of range [0, ",
                                                       num_experts, ") in layer ", layer.layer));
      }
      live.clear();
      for (int32_t w : layer.replicas[static_cast<size_t>(e)]) {
        if (w >= 0 && w < num_workers &&
            (static_cast<size_t>(w) >= worker_up.size() || worker_up[static_cast<size_t>(w)])) {
          live.push_back(w);
        }
      }
      if (live.empty()) {
        return absl::UnavailableError(
            absl::StrCat("no expert worker up holds expert ", e, " of layer ", layer.layer));
      }
      const int32_t w = live[turn[static_cast<size_t>(e)]++ % live.size()];
      DispatchPlan::Destination& d = plan.destinations[static_cast<size_t>(w)];
      // Rows arrive in ascending order, so the row is new to `d` unless it is its last one.
      if (d.rows.empty() || d.rows.back() != static_cast<int32_t>(t)) {
        d.rows.push_back(static_cast<int32_t>(t));
      }
      plan.slot_worker[static_cast<size_t>(s)] = w;
      plan.slot_pair[static_cast<size_t>(s)] = static_cast<int32_t>(d.pair_expert.size());
      d.pair_token.push_back(static_cast<int32_t>(d.rows.size() - 1));
      d.pair_expert.push_back(e);
    }
  }
  return plan;
}

int64_t DispatchPayloadBytes(int64_t rows, int64_t pairs, int64_t hidden) {
  return rows * hidden * static_cast<int64_t>(sizeof(float)) +
         pairs * 2 * static_cast<int64_t>(sizeof(int32_t));
}

void PackDispatch(const DispatchPlan::Destination& d, const float* x, int64_t hidden,
                  uint8_t* out) {
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(hidden);
  for (size_t r = 0; r < d.rows.size(); ++r) {
    std::memcpy(out + r * row_bytes, x + static_cast<int64_t>(d.rows[r]) * hidden, row_bytes);
  }
  uint8_t* p = out + d.rows.size() * row_bytes;
  for (size_t i = 0; i < d.pair_expert.size(); ++i) {
    const int32_t pair[2] = {d.pair_token[i], d.pair_expert[i]};
    std::memcpy(p + i * sizeof(pair), pair, sizeof(pair));
  }
}

absl::StatusOr<DispatchView> UnpackDispatch(const uint8_t* payload, int64_t bytes, int64_t rows,
                                            int64_t pairs, int64_t hidden) {
  if (rows < 0 || pairs < 0 || hidden <= 0 || DispatchPayloadBytes(rows, pairs, hidden) != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("dispatch payload of ", bytes,
                                                   " bytes does not hold ", rows, " rows and ",
                                                   pairs, " pairs of hidden size ", hidden));
  }
  DispatchView v;
  v.rows = rows;
  v.x = reinterpret_cast<const float*>(payload);
  const uint8_t* p = payload + rows * hidden * static_cast<int64_t>(sizeof(float));
  v.pair_token.resize(static_cast<size_t>(pairs));
  v.pair_expert.resize(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    int32_t pair[2];
    std::memcpy(pair, p + i * static_cast<int64_t>(sizeof(pair)), sizeof(pair));
    if (pair[0] < 0 || pair[0] >= rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("dispatch pair ", i, " names row ", pair[0], " of ", rows));
    }
    v.pair_token[static_cast<size_t>(i)] = pair[0];
    v.pair_expert[static_cast<size_t>(i)] = pair[1];
  }
  return v;
}

void SlotOutputRows(const DispatchPlan& plan, const std::vector<const float*>& outputs,
                    int64_t hidden, const float** slots) {
  for (size_t s = 0; s < plan.slot_worker.size(); ++s) {
    slots[s] = outputs[static_cast<size_t>(plan.slot_worker[s])] +
               static_cast<int64_t>(plan.slot_pair[s]) * hidden;
  }
}

void GatherOutputs(const DispatchPlan& plan, const std::vector<const float*>& outputs,
                   int64_t hidden, float* ys) {
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(hidden);
  for (size_t s = 0; s < plan.slot_worker.size(); ++s) {
    const float* y = outputs[static_cast<size_t>(plan.slot_worker[s])] +
                     static_cast<int64_t>(plan.slot_pair[s]) * hidden;
    std::memcpy(ys + static_cast<int64_t>(s) * hidden, y, row_bytes);
  }
}

}  // namespace dsv3::experts
