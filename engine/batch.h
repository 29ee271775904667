#ifndef DSV3_ENGINE_BATCH_H_
#define DSV3_ENGINE_BATCH_H_

// How one forward step lays out a ragged batch: the new tokens of every sequence are rows
// [token_begin, token_begin + num_tokens) of the step's activations, at positions
// start_pos .. start_pos + num_tokens - 1; positions before start_pos are already in the
// sequence's KV blocks.

#include <cstdint>
#include <map>
#include <vector>

#include "engine/kv_cache.h"

namespace dsv3::engine {

struct SequenceSlice {
  int64_t token_begin = 0;
  int64_t num_tokens = 0;
  int64_t start_pos = 0;
  const KvSequence* kv = nullptr;
};

// Which MLA formulation attends. Both give the same numbers to float rounding; kAuto picks
// the absorbed form (attention over the latent, cheap per query) for decode-sized slices and
// the expanded form (per-head K/V from the latent, cheap per context token) for prefill.
enum class AttentionForm { kAuto, kExpanded, kAbsorbed };

// Optional per-step diagnostics (tests and debugging).
struct ForwardTrace {
  // [layer][row]: L2 norm of the residual stream after each decoder layer.
  std::vector<std::vector<double>> layer_output_l2;
  struct Routing {
    std::vector<int32_t> experts;  // [rows, top_k]
    std::vector<float> weights;    // [rows, top_k], routed_scaling_factor included
  };
  std::map<int64_t, Routing> routing;  // by layer index
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_BATCH_H_
