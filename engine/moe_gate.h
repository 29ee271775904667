#ifndef DSV3_ENGINE_MOE_GATE_H_
#define DSV3_ENGINE_MOE_GATE_H_

// Expert selection of a DeepSeekMoE layer from the router logits (x . mlp.gate.weight^T).
//
// Scores: sigmoid (V3) or softmax (V2) of the logits. Selection uses the scores plus
// e_score_correction_bias (noaux_tc only); with n_group > 1 the groups are ranked by the sum of
// their top-2 biased scores (noaux_tc) or their max score (group_limited_greedy), the best
// topk_group groups stay, and the top num_experts_per_tok experts of those are chosen (ties
// to the lower index). Weights are the unbiased scores of the chosen experts, then:
//   deepseek_v3 / kimi_k2: normalised to sum 1 when norm_topk_prob, times routed_scaling_factor;
//   deepseek_v2 (HF DeepseekV2MoEGate): normalised when norm_topk_prob, else times
//   routed_scaling_factor.

#include <cstdint>

#include "engine/model_config.h"

namespace dsv3::engine {

// logits: [rows, n_routed_experts]; bias: [n_routed_experts] or null.
// experts/weights: [rows, num_experts_per_tok], each row sorted by ascending expert id.
void RouteTokens(const ModelConfig& config, const float* logits, const float* bias, int64_t rows,
                 int32_t* experts, float* weights);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MOE_GATE_H_
