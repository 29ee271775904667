#include "engine/moe_gate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace dsv3::engine {
namespace {

// Indices of the `k` largest values (ties: lower index first).
std::vector<int32_t> TopK(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return v[a] != v[b] ? v[a] > v[b] : a < b; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace

void RouteTokens(const ModelConfig& c, const float* logits, const float* bias, int64_t rows,
                 int32_t* experts, float* weights) {
  const int64_t n = c.n_routed_experts;
  const int64_t k = c.num_experts_per_tok;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> scores(static_cast<size_t>(n));
  std::vector<float> choice(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = logits + r * n;
    if (c.scoring_func == ScoringFunc::kSigmoid) {
      for (int64_t e = 0; e < n; ++e) scores[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      std::copy(l, l + n, scores.begin());
      const float m = *std::max_element(scores.begin(), scores.end());
      double sum = 0.0;
      for (float& s : scores) sum += (s = std::exp(s - m));
      for (float& s : scores) s = static_cast<float>(s / sum);
    }
    for (int64_t e = 0; e < n; ++e) choice[e] = scores[e] + (bias != nullptr ? bias[e] : 0.0f);

    if (c.topk_method != TopkMethod::kGreedy && c.n_group > 1) {
      const int64_t per_group = n / c.n_group;
      std::vector<float> group_score(static_cast<size_t>(c.n_group));
      for (int64_t g = 0; g < c.n_group; ++g) {
        std::vector<float> members(choice.begin() + g * per_group,
                                   choice.begin() + (g + 1) * per_group);
        std::sort(members.begin(), members.end(), std::greater<float>());
        group_score[g] =
            c.topk_method == TopkMethod::kNoauxTc ? members[0] + members[1] : members[0];
      }
      std::vector<int32_t> keep = TopK(group_score, c.topk_group);
      std::vector<bool> kept(static_cast<size_t>(c.n_group), false);
      for (int32_t g : keep) kept[g] = true;
      for (int64_t e = 0; e < n; ++e) {
        if (!kept[e / per_group]) choice[e] = neg_inf;
      }
    }
    std::vector<int32_t> chosen = TopK(choice, k);
    std::sort(chosen.begin(), chosen.end());
    double sum = 0.0;
    for (int32_t e : chosen) sum += scores[e];
    const bool normalise = c.norm_topk_prob && k > 1;
    const bool v2 = c.model_type == "deepseek_v2";
    for (int64_t i = 0; i < k; ++i) {
      double wgt = scores[chosen[i]];
      if (normalise) wgt /= sum + 1e-20;
      if (!v2 || !normalise) wgt *= c.routed_scaling_factor;
      experts[r * k + i] = chosen[i];
      weights[r * k + i] = static_cast<float>(wgt);
    }
  }
}

}  // namespace dsv3::engine
