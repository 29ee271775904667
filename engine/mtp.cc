#include "engine/mtp.h"

#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {

absl::StatusOr<ForwardResult> MtpForward(const Model& model, std::span<const MtpInput> batch,
                                         KvCachePool& pool, const ForwardOptions& options) {
  const ModelConfig& c = model.config();
  if (!model.has_mtp()) {
    return absl::FailedPreconditionError("the model has no MTP layer loaded");
  }
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  DSV3_RETURN_IF_ERROR(model.CheckCanForward());
  DSV3_RETURN_IF_ERROR(model.CheckPool(pool));
  const int64_t layer = c.num_hidden_layers;  // the first MTP layer
  if (pool.layout().num_layers <= layer) {
    return absl::InvalidArgumentError("KV pool has no MTP layer");
  }
  const MtpWeights& w = model.weights().mtp[0];
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  std::set<const KvSequence*> distinct;
  std::vector<SequenceSlice> slices;
  int64_t rows = 0;
  for (const MtpInput& in : batch) {
    if (in.kv == nullptr || !distinct.insert(in.kv).second) {
      return absl::InvalidArgumentError("each batch entry needs its own KvSequence");
    }
    const int64_t n = static_cast<int64_t>(in.next_tokens.size());
    if (static_cast<int64_t>(in.hidden.size()) != n * hidden) {
      return absl::InvalidArgumentError(
          absl::StrCat("MTP input: ", in.hidden.size(), " hidden floats for ", n, " tokens"));
    }
    DSV3_RETURN_IF_ERROR(model.ValidateTokens(in.next_tokens, in.kv->mtp_num_tokens));
    slices.push_back({rows, n, in.kv->mtp_num_tokens, in.kv});
    rows += n;
  }
  for (const MtpInput& in : batch) {
    DSV3_RETURN_IF_ERROR(
        pool.Reserve(*in.kv, in.kv->mtp_num_tokens + static_cast<int64_t>(in.next_tokens.size())));
  }

  std::vector<float> cat(static_cast<size_t>(rows * 2 * hidden));  // {rows, [enorm(e) | hnorm(h)]}
  for (size_t b = 0; b < batch.size(); ++b) {
    for (int64_t i = 0; i < slices[b].num_tokens; ++i) {
      float* dst = &cat[static_cast<size_t>((slices[b].token_begin + i) * 2 * hidden)];
      w.embed.DequantRow(batch[b].next_tokens[i], 0, hidden, dst);
      RmsNorm(dst, w.enorm.data(), hidden, eps, dst);
      RmsNorm(batch[b].hidden.data() + i * hidden, w.hnorm.data(), hidden, eps, dst + hidden);
    }
  }
  std::vector<float> x(static_cast<size_t>(rows * hidden));  // {rows, hidden}
  MatMul(cat.data(), rows, w.eh_proj, x.data());
  const LayerContext ctx = model.MakeLayerContext(pool, options);
  DSV3_RETURN_IF_ERROR(DecoderLayerForward(ctx, w.block, layer, slices, rows, x.data()));
  RmsNormRows(x.data(), hidden, w.head_norm.data(), hidden, rows, eps, x.data(), hidden);

  std::vector<bool> all_logits;
  for (const MtpInput& in : batch) all_logits.push_back(in.all_logits);
  ForwardResult out = ApplyHead(slices, all_logits, x, hidden, w.head);
  out.hidden = std::move(x);
  for (const MtpInput& in : batch)
    in.kv->mtp_num_tokens += static_cast<int64_t>(in.next_tokens.size());
  return out;
}

}  // namespace dsv3::engine
