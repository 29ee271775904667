#include "engine/decoder_layer.h"

#include <vector>

#include "common/status_macros.h"
#include "engine/kernels/ops.h"
#include "engine/mlp.h"
#include "engine/moe.h"
#include "engine/scratch.h"

namespace dsv3::engine {

absl::Status DecoderLayerForward(const LayerContext& ctx, const LayerWeights& w, int64_t layer,
                                 std::span<const SequenceSlice> seqs, int64_t rows, float* x) {
  const int64_t hidden = ctx.config->hidden_size;
  const float eps = static_cast<float>(ctx.config->rms_norm_eps);
  thread_local ScratchSite normed_site, delta_site;
  Scratch normed(normed_site, static_cast<size_t>(rows * hidden));  // {rows, hidden}
  Scratch delta(delta_site, static_cast<size_t>(rows * hidden));    // {rows, hidden}

  RmsNormRows(x, hidden, w.attn_norm.data(), hidden, rows, eps, normed.data(), hidden);
  DSV3_RETURN_IF_ERROR(ctx.attention->Forward(w.attn, layer, normed.data(), rows, seqs, *ctx.pool,
                                              ctx.form, delta.data()));
  Add(delta.data(), x, rows * hidden);

  RmsNormRows(x, hidden, w.ffn_norm.data(), hidden, rows, eps, normed.data(), hidden);
  if (w.is_moe) {
    ForwardTrace::Routing* routing = ctx.trace != nullptr ? &ctx.trace->routing[layer] : nullptr;
    DSV3_RETURN_IF_ERROR(MoeForward(*ctx.config, w.moe, layer, normed.data(), rows, *ctx.experts,
                                    delta.data(), routing));
  } else {
    SwiGluForward(w.mlp, normed.data(), rows, delta.data());
  }
  Add(delta.data(), x, rows * hidden);

  if (ctx.trace != nullptr) {
    std::vector<double> l2(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) l2[r] = L2Norm(x + r * hidden, hidden);
    ctx.trace->layer_output_l2.push_back(std::move(l2));
  }
  return absl::OkStatus();
}

}  // namespace dsv3::engine
