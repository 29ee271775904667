#include "experts/rebalance_plan.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv3::experts {
namespace {

std::string Figures(const Imbalance& i) {
  return absl::StrFormat("%.3f (per step %.3f)", i.overall, i.per_step);
}

}  // namespace

// --- ExpertLoadWindow ---------------------------------------------------------------------

void ExpertLoadWindow::Add(const v1::ExpertLoadReport& report) {
  for (const v1::ExpertTokenCount& c : report.counts()) {
    if (c.tokens() <= 0 || c.expert() < 0) continue;
    tokens_[c.layer()][c.expert()] += c.tokens();
    total_ += c.tokens();
  }
}

ExpertLoad ExpertLoadWindow::Take(const ExpertPlacement& placement) {
  ExpertLoad load;
  for (const ExpertPlacement::Layer& layer : placement.layers) {
    std::vector<double> tokens(layer.replicas.size(), 0.0);
    auto it = tokens_.find(layer.layer);
    if (it != tokens_.end()) {
      for (const auto& [expert, n] : it->second) {
        if (expert < static_cast<int64_t>(tokens.size())) {
          tokens[static_cast<size_t>(expert)] = static_cast<double>(n);
        }
      }
    }
    load.layers.push_back(layer.layer);
    load.tokens.push_back(std::move(tokens));
  }
  tokens_.clear();
  total_ = 0;
  return load;
}

// --- the decision and the switch ----------------------------------------------------------

absl::StatusOr<RebalanceDecision> DecideRebalance(const ExpertPlacement& current,
                                                  const ExpertLoad& load,
                                                  int32_t redundant_per_layer, int64_t new_version,
                                                  int64_t min_tokens, double min_gain) {
  RebalanceDecision d;
  for (const std::vector<double>& layer : load.tokens) {
    for (double t : layer) d.tokens += static_cast<int64_t>(t);
  }
  d.current = MeasureImbalance(current, load);
  if (d.tokens < min_tokens) {
    d.reason = absl::StrCat(d.tokens, " routed tokens in the window, fewer than the ", min_tokens,
                            " a decision needs");
    return d;
  }
  const int32_t workers = current.num_workers;
  const int64_t experts = load.tokens.empty() ? 0 : static_cast<int64_t>(load.tokens[0].size());
  // Each worker holds an expert at most once.
  const int64_t fits = experts * std::max(workers - 1, 0);
  const int32_t redundant =
      static_cast<int32_t>(std::min<int64_t>(std::max(redundant_per_layer, 0), fits));
  absl::StatusOr<ExpertPlacement> proposed =
      RebalanceExperts(load, workers, redundant, new_version);
  if (!proposed.ok()) return proposed.status();
  d.placement = *std::move(proposed);
  d.proposed = MeasureImbalance(d.placement, load);
  d.apply = d.proposed.overall < d.current.overall * (1.0 - min_gain);
  d.reason = absl::StrCat(
      d.tokens, " routed tokens; imbalance (max/mean tokens per worker) of placement ",
      current.version, " ", Figures(d.current), ", proposed with ", redundant,
      " redundant copies per layer ", Figures(d.proposed),
      d.apply
          ? absl::StrFormat(": applying as version %d", new_version)
          : absl::StrFormat(": keeping it (a change needs a gain over %.0f%%)", 100 * min_gain));
  return d;
}

std::vector<PlacementStep> PlanPlacementSwitch(const ExpertPlacement& from,
                                               const ExpertPlacement& to, int64_t first_version) {
  int64_t version = first_version;
  PlacementStep load;
  for (int32_t w = 0; w < to.num_workers; ++w) {
    // The old map plus w's new copies: routing by it reaches only what w has loaded.
    PlacementApply apply{w, from};
    bool gains = false;
    for (const ExpertPlacement::Layer& layer : to.layers) {
      for (ExpertPlacement::Layer& old : apply.placement.layers) {
        if (old.layer != layer.layer) continue;
        for (size_t e = 0; e < layer.replicas.size() && e < old.replicas.size(); ++e) {
          const std::vector<int32_t>& now = layer.replicas[e];
          std::vector<int32_t>& was = old.replicas[e];
          if (std::count(now.begin(), now.end(), w) && !std::count(was.begin(), was.end(), w)) {
            was.push_back(w);
            std::sort(was.begin(), was.end());
            gains = true;
          }
        }
      }
    }
    if (!gains) continue;
    apply.placement.version = version++;
    apply.placement.worker_addresses = to.worker_addresses;
    load.push_back(std::move(apply));
  }
  PlacementStep all;
  for (int32_t w = 0; w < to.num_workers; ++w) {
    all.push_back({w, to});
    all.back().placement.version = version;
  }
  std::vector<PlacementStep> steps;
  if (!load.empty()) steps.push_back(std::move(load));
  steps.push_back(std::move(all));
  return steps;
}

// --- ExpertRebalancer -----------------------------------------------------------------------

// --- Failover --------------------------------------------------------------------------

ExpertPlacement AddCopiesForGoneWorkers(const ExpertPlacement& current,
                                        const std::vector<bool>& live,
                                        const std::vector<bool>& gone, int64_t* added) {
  ExpertPlacement next = current;
  int64_t moved = 0;
  const int32_t n = current.num_workers;
  const bool any_live = std::find(live.begin(), live.end(), true) != live.end();
  for (ExpertPlacement::Layer& layer : next.layers) {
    if (!any_live) break;
    std::vector<int64_t> copies(static_cast<size_t>(n), 0);
    for (const std::vector<int32_t>& r : layer.replicas) {
      for (int32_t w : r) ++copies[static_cast<size_t>(w)];
    }
    for (std::vector<int32_t>& r : layer.replicas) {
      bool served = false;
      for (int32_t w : r) served = served || !gone[static_cast<size_t>(w)];
      if (served) continue;
      int32_t best = -1;
      for (int32_t w = 0; w < n; ++w) {
        if (live[static_cast<size_t>(w)] &&
            (best < 0 || copies[static_cast<size_t>(w)] < copies[static_cast<size_t>(best)])) {
          best = w;
        }
      }
      r.push_back(best);
      ++copies[static_cast<size_t>(best)];
      ++moved;
    }
  }
  if (added != nullptr) *added = moved;
  return next;
}

}  // namespace dsv3::experts
