#include "experts/eplb.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <random>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dsv3::experts {
namespace {

// Slots per worker for `total` copies on `n` workers: equal, the remainder one each to the
// workers from `offset` on (wrapping), so rotating `offset` over layers evens the totals.
std::vector<int64_t> SlotCaps(int64_t total, int64_t n, int64_t offset) {
  std::vector<int64_t> caps(static_cast<size_t>(n), total / n);
  const int64_t extra = total % n;
  for (int64_t i = 0; i < extra; ++i) ++caps[static_cast<size_t>((offset + i) % n)];
  return caps;
}

// One layer, global policy: replicas[e] over workers [0, num_workers).
absl::StatusOr<std::vector<std::vector<int32_t>>> PlaceGlobal(const std::vector<double>& loads,
                                                              int32_t num_workers,
                                                              int64_t redundant, int64_t offset) {
  const int64_t slots = static_cast<int64_t>(loads.size()) + redundant;
  std::vector<int32_t> counts = eplb_internal::ReplicateExperts(loads, slots, num_workers);
  return eplb_internal::PackReplicas(loads, counts, SlotCaps(slots, num_workers, offset));
}

// One layer, hierarchical policy: groups to nodes, then the global policy within each node.
absl::StatusOr<std::vector<std::vector<int32_t>>> PlaceHierarchical(
    const std::vector<double>& loads, int32_t num_workers, int64_t redundant, int64_t offset,
    const EplbOptions& options) {
  const int64_t num_experts = static_cast<int64_t>(loads.size());
  const int64_t num_nodes = options.num_nodes;
  const int64_t group_size = num_experts / options.num_groups;
  const int64_t groups_per_node = options.num_groups / num_nodes;
  const int32_t workers_per_node = static_cast<int32_t>(num_workers / num_nodes);

  // Groups, heaviest first, each to the lightest node with room (equal group counts).
  std::vector<double> group_load(static_cast<size_t>(options.num_groups), 0.0);
  for (int64_t e = 0; e < num_experts; ++e) {
    group_load[static_cast<size_t>(e / group_size)] += loads[static_cast<size_t>(e)];
  }
  std::vector<int64_t> order(group_load.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return group_load[static_cast<size_t>(a)] > group_load[static_cast<size_t>(b)];
  });
  std::vector<double> node_load(static_cast<size_t>(num_nodes), 0.0);
  std::vector<std::vector<int64_t>> node_groups(static_cast<size_t>(num_nodes));
  for (int64_t g : order) {
    int64_t best = -1;
    for (int64_t n = 0; n < num_nodes; ++n) {
      if (static_cast<int64_t>(node_groups[static_cast<size_t>(n)].size()) == groups_per_node) {
        continue;
      }
      if (best < 0 || node_load[static_cast<size_t>(n)] < node_load[static_cast<size_t>(best)]) {
        best = n;
      }
    }
    node_groups[static_cast<size_t>(best)].push_back(g);
    node_load[static_cast<size_t>(best)] += group_load[static_cast<size_t>(g)];
  }

  std::vector<std::vector<int32_t>> replicas(static_cast<size_t>(num_experts));
  for (int64_t n = 0; n < num_nodes; ++n) {
    std::vector<int64_t> experts;  // node-local index -> expert
    for (int64_t g : node_groups[static_cast<size_t>(n)]) {
      for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) experts.push_back(e);
    }
    std::vector<double> local(experts.size());
    for (size_t i = 0; i < experts.size(); ++i) {
      local[i] = loads[static_cast<size_t>(experts[i])];
    }
    absl::StatusOr<std::vector<std::vector<int32_t>>> placed =
        PlaceGlobal(local, workers_per_node, redundant / num_nodes, offset);
    if (!placed.ok()) return placed.status();
    for (size_t i = 0; i < experts.size(); ++i) {
      std::vector<int32_t>& r = replicas[static_cast<size_t>(experts[i])];
      for (int32_t w : (*placed)[i]) {
        r.push_back(static_cast<int32_t>(n * workers_per_node + w));
      }
    }
  }
  return replicas;
}

// Renames workers so that, in this layer, the heavier of interchangeable workers become the
// ones with fewer tokens so far: per-layer balance is unchanged, and the layers' heaviest
// experts do not all land on the same worker (worker 0, where ties go). Interchangeable:
// whole nodes (their slot layouts are alike), then workers of a node with equal slot counts.
void Relabel(const std::vector<double>& loads, const std::vector<double>& so_far, int32_t num_nodes,
             std::vector<std::vector<int32_t>>* replicas) {
  const size_t num_workers = so_far.size();
  const size_t span = num_workers / static_cast<size_t>(num_nodes);
  std::vector<double> load(num_workers);
  std::vector<int64_t> slots(num_workers);
  auto tally = [&] {
    std::fill(load.begin(), load.end(), 0.0);
    std::fill(slots.begin(), slots.end(), 0);
    for (size_t e = 0; e < replicas->size(); ++e) {
      for (int32_t w : (*replicas)[e]) {
        load[static_cast<size_t>(w)] += loads[e] / (*replicas)[e].size();
        ++slots[static_cast<size_t>(w)];
      }
    }
  };
  auto apply = [&](const std::vector<int32_t>& to) {
    for (std::vector<int32_t>& r : *replicas) {
      for (int32_t& w : r) w = to[static_cast<size_t>(w)];
      std::sort(r.begin(), r.end());
    }
  };
  // Members of `set`, heaviest now first, to members of `set`, lightest so far first.
  auto match = [](std::vector<size_t> set, const std::vector<double>& now,
                  const std::vector<double>& before, std::vector<size_t>* from,
                  std::vector<size_t>* onto) {
    *from = set;
    std::stable_sort(from->begin(), from->end(),
                     [&](size_t a, size_t b) { return now[a] > now[b]; });
    *onto = std::move(set);
    std::stable_sort(onto->begin(), onto->end(),
                     [&](size_t a, size_t b) { return before[a] < before[b]; });
  };
  std::vector<int32_t> to(num_workers);
  std::vector<size_t> from, onto;
  if (num_nodes > 1) {
    tally();
    std::vector<double> node_now(static_cast<size_t>(num_nodes), 0.0);
    std::vector<double> node_before(static_cast<size_t>(num_nodes), 0.0);
    for (size_t w = 0; w < num_workers; ++w) {
      node_now[w / span] += load[w];
      node_before[w / span] += so_far[w];
    }
    std::vector<size_t> nodes(static_cast<size_t>(num_nodes));
    std::iota(nodes.begin(), nodes.end(), 0);
    match(nodes, node_now, node_before, &from, &onto);
    for (size_t k = 0; k < from.size(); ++k) {
      for (size_t i = 0; i < span; ++i)
        to[from[k] * span + i] = static_cast<int32_t>(onto[k] * span + i);
    }
    apply(to);
  }
  tally();
  std::iota(to.begin(), to.end(), 0);
  for (size_t node = 0; node < num_workers / span; ++node) {
    std::set<int64_t> counts;
    for (size_t w = node * span; w < (node + 1) * span; ++w) counts.insert(slots[w]);
    for (int64_t c : counts) {
      std::vector<size_t> set;
      for (size_t w = node * span; w < (node + 1) * span; ++w) {
        if (slots[w] == c) set.push_back(w);
      }
      match(set, load, so_far, &from, &onto);
      for (size_t k = 0; k < from.size(); ++k) to[from[k]] = static_cast<int32_t>(onto[k]);
    }
  }
  apply(to);
}

absl::Status CheckInputs(const ExpertLoad& load, int32_t num_workers, int32_t redundant_per_layer,
                         int64_t new_version, const EplbOptions& options) {
  if (num_workers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB: num_workers must be > 0, got ", num_workers));
  }
  if (redundant_per_layer < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB: redundant_per_layer must be >= 0, got ", redundant_per_layer));
  }
  if (new_version <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB: new_version must be > 0, got ", new_version));
  }
  if (load.layers.empty()) return absl::InvalidArgumentError("EPLB: the load has no layers");
  if (load.layers.size() != load.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EPLB: ", load.layers.size(), " layers but token counts for ", load.tokens.size()));
  }
  std::set<int64_t> seen;
  const size_t num_experts = load.tokens[0].size();
  if (num_experts == 0) return absl::InvalidArgumentError("EPLB: layers have no experts");
  for (size_t i = 0; i < load.layers.size(); ++i) {
    if (!seen.insert(load.layers[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("EPLB: layer ", load.layers[i], " appears twice"));
    }
    if (load.tokens[i].size() != num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("EPLB: layer ", load.layers[i], " has ",
                                                     load.tokens[i].size(), " experts, layer ",
                                                     load.layers[0], " has ", num_experts));
    }
    for (size_t e = 0; e < num_experts; ++e) {
      const double t = load.tokens[i][e];
      if (!std::isfinite(t) || t < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("EPLB: expert ", e, " of layer ", load.layers[i], " has load ", t));
      }
    }
  }
  const int64_t e = static_cast<int64_t>(num_experts);
  // Every copy of an expert must sit on a different worker.
  if (redundant_per_layer > e * (num_workers - 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EPLB: ", e, " experts + ", redundant_per_layer, " redundant copies per layer do not fit ",
        num_workers, " workers holding each expert at most once (at most ", e * (num_workers - 1),
        " redundant)"));
  }
  if (options.num_nodes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB: num_nodes must be > 0, got ", options.num_nodes));
  }
  if (options.num_nodes > 1) {
    const int64_t n = options.num_nodes;
    if (options.num_groups <= 0 || e % options.num_groups != 0 || options.num_groups % n != 0 ||
        num_workers % n != 0 || redundant_per_layer % n != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "EPLB hierarchical: need num_groups (", options.num_groups, ") dividing num_experts (", e,
          "), and num_nodes (", n, ") dividing num_groups, num_workers (", num_workers,
          ") and redundant_per_layer (", redundant_per_layer, ")"));
    }
    const int64_t per_node_workers = num_workers / n;
    if (redundant_per_layer / n > (e / n) * (per_node_workers - 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("EPLB hierarchical: ", redundant_per_layer / n,
                       " redundant copies per node exceed ", (e / n) * (per_node_workers - 1), " (",
                       e / n, " experts on ", per_node_workers, " workers)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace eplb_internal {

std::vector<int32_t> ReplicateExperts(const std::vector<double>& loads, int64_t num_slots,
                                      int32_t max_replicas) {
  const size_t n = loads.size();
  std::vector<int32_t> counts(n, 1);
  // Top = largest load / count, ties to the fewest copies (so equal or zero loads share the
  // spare slots), then the lowest expert. Cross-multiplied so equal ratios compare equal.
  auto lower = [&](size_t a, size_t b) {
    const double ra = loads[a] * counts[b];
    const double rb = loads[b] * counts[a];
    if (ra != rb) return ra < rb;
    return counts[a] != counts[b] ? counts[a] > counts[b] : a > b;
  };
  std::priority_queue<size_t, std::vector<size_t>, decltype(lower)> heap(lower);
  if (max_replicas > 1) {
    for (size_t e = 0; e < n; ++e) heap.push(e);
  }
  for (int64_t s = static_cast<int64_t>(n); s < num_slots && !heap.empty(); ++s) {
    const size_t e = heap.top();
    heap.pop();
    ++counts[e];  // the heap key changes only for `e`, which is out of the heap now
    if (counts[e] < max_replicas) heap.push(e);
  }
  return counts;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> PackReplicas(const std::vector<double>& loads,
                                                               const std::vector<int32_t>& counts,
                                                               const std::vector<int64_t>& caps) {
  const size_t num_workers = caps.size();
  struct Item {
    double weight;
    int32_t expert;
  };
  std::vector<Item> items;
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int32_t r = 0; r < counts[e]; ++r) {
      items.push_back({loads[e] / counts[e], static_cast<int32_t>(e)});
    }
  }
  // Heaviest first; a replicated expert's copies stay together.
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.weight > b.weight; });
  if (static_cast<int64_t>(items.size()) != std::accumulate(caps.begin(), caps.end(), int64_t{0})) {
    return absl::InternalError("EPLB: replica and slot counts differ");
  }

  std::vector<double> worker_load(num_workers, 0.0);
  std::vector<std::vector<Item>> held(num_workers);  // what each worker holds
  auto holds = [&](size_t w, int32_t expert) {
    for (const Item& it : held[w]) {
      if (it.expert == expert) return true;
    }
    return false;
  };
  auto full = [&](size_t w) { return static_cast<int64_t>(held[w].size()) >= caps[w]; };

  for (const Item& item : items) {
    size_t best = num_workers;
    for (size_t w = 0; w < num_workers; ++w) {
      if (full(w) || holds(w, item.expert)) continue;
      if (best == num_workers || worker_load[w] < worker_load[best]) best = w;
    }
    if (best == num_workers) {
      // Every worker with a free slot already holds this expert. Move some copy x from a full
      // worker v without the expert to such a worker w (which lacks x's expert), and put the
      // item on v. One always exists when caps differ by at most one: v holds at least as
      // many copies as w, of distinct experts, so not all of them can be on w too.
      double best_score = 0;
      size_t bw = num_workers, bv = num_workers, bx = 0;
      for (size_t w = 0; w < num_workers; ++w) {
        if (full(w)) continue;
        for (size_t v = 0; v < num_workers; ++v) {
          if (!full(v) || holds(v, item.expert)) continue;
          for (size_t x = 0; x < held[v].size(); ++x) {
            if (holds(w, held[v][x].expert)) continue;
            const double score = std::max(worker_load[v] - held[v][x].weight + item.weight,
                                          worker_load[w] + held[v][x].weight);
            if (bw == num_workers || score < best_score) {
              best_score = score;
              bw = w;
              bv = v;
              bx = x;
            }
          }
        }
      }
      if (bw == num_workers) {
        return absl::InternalError(
            absl::StrCat("EPLB: no worker can take a copy of expert ", item.expert));
      }
      const Item moved = held[bv][bx];
      held[bv].erase(held[bv].begin() + static_cast<std::ptrdiff_t>(bx));
      worker_load[bv] -= moved.weight;
      held[bw].push_back(moved);
      worker_load[bw] += moved.weight;
      best = bv;
    }
    held[best].push_back(item);
    worker_load[best] += item.weight;
  }

  std::vector<std::vector<int32_t>> replicas(counts.size());
  for (size_t w = 0; w < num_workers; ++w) {
    for (const Item& it : held[w]) {
      replicas[static_cast<size_t>(it.expert)].push_back(static_cast<int32_t>(w));
    }
  }
  return replicas;  // each list ascending: workers are visited in order
}

}  // namespace eplb_internal

absl::StatusOr<ExpertPlacement> RebalanceExperts(const ExpertLoad& load, int32_t num_workers,
                                                 int32_t redundant_per_layer, int64_t new_version,
                                                 const EplbOptions& options) {
  if (absl::Status s = CheckInputs(load, num_workers, redundant_per_layer, new_version, options);
      !s.ok()) {
    return s;
  }
  std::vector<size_t> order(load.layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return load.layers[a] < load.layers[b]; });

  ExpertPlacement p;
  p.version = new_version;
  p.num_workers = num_workers;
  const int64_t slots = static_cast<int64_t>(load.tokens[0].size()) + redundant_per_layer;
  // Workers (per node) sharing the layer's spare slots; rotating who gets them evens the
  // totals over layers.
  const int64_t span = num_workers / options.num_nodes;
  const int64_t spare = (slots / options.num_nodes) % span;
  int64_t offset = 0;
  std::vector<double> so_far(static_cast<size_t>(num_workers), 0.0);  // tokens per worker
  for (size_t i : order) {
    const std::vector<double>& loads = load.tokens[i];
    absl::StatusOr<std::vector<std::vector<int32_t>>> replicas =
        options.num_nodes > 1
            ? PlaceHierarchical(loads, num_workers, redundant_per_layer, offset, options)
            : PlaceGlobal(loads, num_workers, redundant_per_layer, offset);
    if (!replicas.ok()) return replicas.status();
    Relabel(loads, so_far, options.num_nodes, &*replicas);
    for (size_t e = 0; e < loads.size(); ++e) {
      for (int32_t w : (*replicas)[e]) {
        so_far[static_cast<size_t>(w)] += loads[e] / (*replicas)[e].size();
      }
    }
    p.layers.push_back({load.layers[i], *std::move(replicas)});
    offset = (offset + spare) % span;
  }
  return p;
}

Imbalance MeasureImbalance(const ExpertPlacement& placement, const ExpertLoad& load) {
  Imbalance out;
  const size_t num_workers = static_cast<size_t>(std::max(placement.num_workers, 0));
  out.tokens_per_worker.assign(num_workers, 0.0);
  if (num_workers == 0) return out;
  double sum_max = 0, sum_mean = 0;
  for (size_t i = 0; i < load.layers.size() && i < load.tokens.size(); ++i) {
    std::vector<double> layer_tokens(num_workers, 0.0);
    if (const ExpertPlacement::Layer* l = placement.Find(load.layers[i])) {
      const size_t n = std::min(l->replicas.size(), load.tokens[i].size());
      for (size_t e = 0; e < n; ++e) {
        const std::vector<int32_t>& r = l->replicas[e];
        for (int32_t w : r) {
          if (w >= 0 && static_cast<size_t>(w) < num_workers) {
            layer_tokens[static_cast<size_t>(w)] += load.tokens[i][e] / r.size();
          }
        }
      }
    }
    const double max = *std::max_element(layer_tokens.begin(), layer_tokens.end());
    const double mean =
        std::accumulate(layer_tokens.begin(), layer_tokens.end(), 0.0) / num_workers;
    out.per_layer.push_back(mean > 0 ? max / mean : 1.0);
    sum_max += max;
    sum_mean += mean;
    for (size_t w = 0; w < num_workers; ++w) out.tokens_per_worker[w] += layer_tokens[w];
  }
  const double max = *std::max_element(out.tokens_per_worker.begin(), out.tokens_per_worker.end());
  const double mean =
      std::accumulate(out.tokens_per_worker.begin(), out.tokens_per_worker.end(), 0.0) /
      num_workers;
  out.overall = mean > 0 ? max / mean : 1.0;
  out.per_step = sum_mean > 0 ? sum_max / sum_mean : 1.0;
  return out;
}

double WorkerImbalance(const ExpertPlacement& placement, const ExpertLoad& load) {
  return MeasureImbalance(placement, load).overall;
}

ExpertLoad ZipfExpertLoad(const std::vector<int64_t>& layers, int64_t num_experts, double s,
                          double tokens_per_layer, uint64_t seed) {
  ExpertLoad load;
  load.layers = layers;
  std::vector<double> weight(static_cast<size_t>(std::max<int64_t>(num_experts, 0)));
  double sum = 0;
  for (size_t k = 0; k < weight.size(); ++k) {
    weight[k] = 1.0 / std::pow(static_cast<double>(k + 1), s);
    sum += weight[k];
  }
  std::mt19937_64 rng(seed);  // the engine's output is fixed by the standard
  for (size_t i = 0; i < layers.size(); ++i) {
    std::vector<size_t> rank(weight.size());  // expert -> rank
    std::iota(rank.begin(), rank.end(), 0);
    // Fisher-Yates on the raw engine output: std::shuffle differs between libraries.
    for (size_t j = rank.size(); j > 1; --j) std::swap(rank[j - 1], rank[rng() % j]);
    std::vector<double> tokens(weight.size());
    for (size_t e = 0; e < weight.size(); ++e) {
      tokens[e] = std::round(tokens_per_layer * weight[rank[e]] / sum);
    }
    load.tokens.push_back(std::move(tokens));
  }
  return load;
}

}  // namespace dsv3::experts
