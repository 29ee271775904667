#ifndef DSV3_TOOLS_ENGINE_FLAGS_H_
#define DSV3_TOOLS_ENGINE_FLAGS_H_

// Flags shared by the engine commands (make-model, logits, generate). Abseil flags are global
// to the `dsv3` binary, so each is defined once, here.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "engine/model_weights.h"
#include "engine/sampler.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, tokens);
ABSL_DECLARE_FLAG(std::string, output);
ABSL_DECLARE_FLAG(std::string, mtp_output);
ABSL_DECLARE_FLAG(int64_t, max_tokens);
ABSL_DECLARE_FLAG(std::string, speculative);
ABSL_DECLARE_FLAG(int32_t, draft_tokens);
ABSL_DECLARE_FLAG(std::string, preset);
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(int32_t, mtp);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, min_p);
ABSL_DECLARE_FLAG(double, repetition_penalty);
ABSL_DECLARE_FLAG(double, presence_penalty);
ABSL_DECLARE_FLAG(double, frequency_penalty);
ABSL_DECLARE_FLAG(std::string, stop_token_ids);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(std::string, weights);
ABSL_DECLARE_FLAG(bool, int8_activations);
ABSL_DECLARE_FLAG(bool, bf16_activations);
ABSL_DECLARE_FLAG(bool, batch_invariant);

namespace dsv3::tools {

// "0 17 5" or "0,17,5" -> ids.
absl::StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text);
// LoadOptions from the shared load flags (--threads, --weights, --int8_activations,
// --bf16_activations).
absl::StatusOr<engine::LoadOptions> LoadOptionsFromFlags();
// SamplingParams from the sampling flags (greedy unless --temperature > 0).
absl::StatusOr<engine::SamplingParams> SamplingParamsFromFlags();

}  // namespace dsv3::tools

#endif  // DSV3_TOOLS_ENGINE_FLAGS_H_
