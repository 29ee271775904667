#ifndef DSV3_ENGINE_GENERATOR_H_
#define DSV3_ENGINE_GENERATOR_H_

// Single-request generation loops over a private KV pool: plain (prefill, then one token per
// step) and MTP speculative decoding, k drafts per verification step (the steps of
// speculative.h, which the decode worker's scheduler runs batched). This is the in-process
// reference (`dsv3 generate`, end-to-end tests).

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/sampler.h"

namespace dsv3::engine {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  bool speculative_mtp = false;
  int32_t num_draft_tokens = 1;  // k drafts per verification step
  int64_t block_size = 64;
  // Testing hook: when set, replaces the MTP layer's proposals (the MTP layer still runs, so
  // its cache bookkeeping is exercised). Receives the tokens emitted so far and k.
  std::function<std::vector<int32_t>(std::span<const int32_t> emitted, int64_t k)> draft_override;
};

struct GenerateResult {
  std::vector<SampledToken> tokens;
  int64_t drafted = 0;   // draft tokens proposed by MTP
  int64_t accepted = 0;  // of which the main model agreed with
  int64_t main_steps = 0;
  std::vector<int32_t> token_ids() const;
};

absl::StatusOr<GenerateResult> Generate(const Model& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_GENERATOR_H_
