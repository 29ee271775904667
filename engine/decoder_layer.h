#ifndef DSV3_ENGINE_DECODER_LAYER_H_
#define DSV3_ENGINE_DECODER_LAYER_H_

// One pre-norm decoder block: x += MLA(RMSNorm(x)); x += FFN(RMSNorm(x)), FFN dense SwiGLU or
// MoE. Shared by the main layers and the MTP block.

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/batch.h"
#include "engine/kv_cache.h"
#include "engine/mla_attention.h"
#include "engine/model_weights.h"
#include "engine/routed_experts.h"

namespace dsv3::engine {

struct LayerContext {
  const ModelConfig* config = nullptr;
  const MlaAttention* attention = nullptr;
  KvCachePool* pool = nullptr;
  RoutedExpertExecutor* experts = nullptr;
  AttentionForm form = AttentionForm::kAuto;
  ForwardTrace* trace = nullptr;
};

// x: [rows, hidden] residual stream, updated in place. `layer` is the cache/expert layer index.
absl::Status DecoderLayerForward(const LayerContext& ctx, const LayerWeights& w, int64_t layer,
                                 std::span<const SequenceSlice> seqs, int64_t rows, float* x);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_DECODER_LAYER_H_
