#ifndef DSV3_ENGINE_MTP_H_
#define DSV3_ENGINE_MTP_H_

// The multi-token-prediction layer (DeepSeek-V3 report section 2.2; stored as decoder layer
// num_hidden_layers) run as a draft model. Row i of a sequence's MTP stream combines the
// main model's final-normed hidden state h_i (position i) with the embedding of token i+1:
//   x_i = eh_proj([RMSNorm(embed(t_{i+1}); enorm) | RMSNorm(h_i; hnorm)])
// runs the MTP decoder block over rows 0..i (its own KV in cache layer num_hidden_layers,
// RoPE position i), and predicts token i+2 with shared_head.head(RMSNorm(.; shared_head.norm)).

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "engine/model.h"

namespace dsv3::engine {

struct MtpInput {
  std::span<const float> hidden;         // [n, hidden]: h at positions kv->mtp_num_tokens ...
  std::span<const int32_t> next_tokens;  // [n]: the token after each of those positions
  KvSequence* kv = nullptr;
  bool all_logits = false;
};

// Appends n rows to each sequence's MTP stream (kv->mtp_num_tokens += n). The result's
// `hidden` is always filled: the shared_head-normed output rows (what a further draft step
// uses as its h).
absl::StatusOr<ForwardResult> MtpForward(const Model& model, std::span<const MtpInput> batch,
                                         KvCachePool& pool, const ForwardOptions& options = {});

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MTP_H_
