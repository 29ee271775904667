#include "experts/expert_placement.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace dsv3::experts {

const ExpertPlacement::Layer* ExpertPlacement::Find(int64_t layer) const {
  auto it = std::lower_bound(layers.begin(), layers.end(), layer,
                             [](const Layer& l, int64_t v) { return l.layer < v; });
  return it != layers.end() && it->layer == layer ? &*it : nullptr;
}

std::vector<std::pair<int64_t, int64_t>> ExpertPlacement::ExpertsOf(int32_t w) const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const Layer& l : layers) {
    for (size_t e = 0; e < l.replicas.size(); ++e) {
      const std::vector<int32_t>& r = l.replicas[e];
      if (std::find(r.begin(), r.end(), w) != r.end()) {
        out.emplace_back(l.layer, static_cast<int64_t>(e));
      }
    }
  }
  return out;
}

std::vector<int64_t> ExpertPlacement::SlotsPerWorker() const {
  std::vector<int64_t> slots(static_cast<size_t>(std::max(num_workers, 0)), 0);
  for (const Layer& l : layers) {
    for (const std::vector<int32_t>& r : l.replicas) {
      for (int32_t w : r) {
        if (w >= 0 && w < num_workers) ++slots[static_cast<size_t>(w)];
      }
    }
  }
  return slots;
}

absl::Status ExpertPlacement::Validate(const std::vector<int64_t>& moe_layers,
                                       int64_t num_experts) const {
  if (num_workers <= 0) return absl::InvalidArgumentError("placement has no workers");
  if (layers.size() != moe_layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement covers ", layers.size(), " MoE layers, the model has ", moe_layers.size()));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    if (l.layer != moe_layers[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "placement layer ", l.layer, " where the model has MoE layer ", moe_layers[i]));
    }
    if (static_cast<int64_t>(l.replicas.size()) != num_experts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "placement layer ", l.layer, " has ", l.replicas.size(), " experts, not ", num_experts));
    }
    for (size_t e = 0; e < l.replicas.size(); ++e) {
      const std::vector<int32_t>& r = l.replicas[e];
      if (r.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert ", e, " of layer ", l.layer, " has no worker"));
      }
      std::set<int32_t> seen;
      for (int32_t w : r) {
        if (w < 0 || w >= num_workers || !seen.insert(w).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("expert ", e, " of layer ", l.layer, ": bad or repeated worker ", w));
        }
      }
    }
  }
  return absl::OkStatus();
}

ExpertPlacement DefaultExpertPlacement(const std::vector<int64_t>& moe_layers, int64_t num_experts,
                                       int64_t n_group, int32_t num_workers) {
  ExpertPlacement p;
  p.version = 1;
  p.num_workers = num_workers;
  const int64_t w = std::max<int32_t>(num_workers, 1);
  const bool by_group = n_group > 1 && num_experts % n_group == 0 && n_group >= w;
  const int64_t group_size = by_group ? num_experts / n_group : 1;
  const int64_t units = by_group ? n_group : num_experts;
  std::vector<std::vector<int32_t>> replicas(static_cast<size_t>(num_experts));
  for (int64_t e = 0; e < num_experts; ++e) {
    // Contiguous ranges of units (groups or experts), sizes differing by at most one.
    const int64_t unit = e / group_size;
    replicas[static_cast<size_t>(e)] = {static_cast<int32_t>(unit * w / units)};
  }
  std::vector<int64_t> sorted = moe_layers;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t layer : sorted) p.layers.push_back({layer, replicas});
  return p;
}

}  // namespace dsv3::experts
