#include "worker_common/worker_conversions.h"

#include <algorithm>

namespace dsv3::worker {

engine::SamplingParams ToEngineSampling(const v1::SamplingParams& wire) {
  engine::SamplingParams p;
  p.temperature = wire.temperature();
  p.top_k = wire.top_k();
  p.top_p = (wire.top_p() <= 0.0f || wire.top_p() > 1.0f) ? 1.0f : wire.top_p();
  p.min_p = wire.min_p();
  p.repetition_penalty = wire.repetition_penalty() == 0.0f ? 1.0f : wire.repetition_penalty();
  p.presence_penalty = wire.presence_penalty();
  p.frequency_penalty = wire.frequency_penalty();
  p.seed = wire.has_seed() ? wire.seed() : 0;
  p.top_logprobs = wire.logprobs();
  p.stop_token_ids.assign(wire.stop_token_ids().begin(), wire.stop_token_ids().end());
  p.logit_bias.assign(wire.logit_bias().begin(), wire.logit_bias().end());
  std::sort(p.logit_bias.begin(), p.logit_bias.end());  // a map's order is unspecified
  return p;
}

v1::KvLayout ToWireLayout(const engine::KvCacheLayout& layout, int num_mtp_layers) {
  v1::KvLayout wire;
  wire.set_num_layers(static_cast<int32_t>(layout.num_layers - num_mtp_layers));
  wire.set_num_mtp_layers(num_mtp_layers);
  wire.set_block_size(static_cast<int32_t>(layout.block_size));
  wire.set_kv_lora_rank(static_cast<int32_t>(layout.kv_lora_rank));
  wire.set_qk_rope_head_dim(static_cast<int32_t>(layout.qk_rope_head_dim));
  wire.set_dtype(v1::KV_DTYPE_F32);
  wire.set_row_bytes(layout.row_floats() * 4);
  wire.set_block_stride_bytes(layout.block_bytes());
  wire.set_layer_stride_bytes(layout.layer_bytes());
  wire.set_num_blocks(static_cast<int32_t>(layout.num_blocks));
  return wire;
}

transport::KvPoolLayout ToTransportLayout(const v1::KvLayout& wire) {
  transport::KvPoolLayout l;
  l.num_layers = wire.num_layers() + wire.num_mtp_layers();
  l.block_size = wire.block_size();
  l.num_blocks = wire.num_blocks();
  l.row_bytes = wire.row_bytes();
  l.block_stride_bytes = wire.block_stride_bytes();
  l.layer_stride_bytes = wire.layer_stride_bytes();
  return l;
}

transport::KvPoolLayout ToTransportLayout(const engine::KvCacheLayout& layout) {
  transport::KvPoolLayout l;
  l.num_layers = static_cast<int>(layout.num_layers);
  l.block_size = static_cast<int>(layout.block_size);
  l.num_blocks = static_cast<int>(layout.num_blocks);
  l.row_bytes = layout.row_floats() * 4;
  l.block_stride_bytes = layout.block_bytes();
  l.layer_stride_bytes = layout.layer_bytes();
  return l;
}

absl::StatusOr<transport::KvWriteTarget> ToWriteTarget(const v1::KvDestination& d) {
  if (d.ucx_worker_address().empty() || d.rkey().empty() || d.base_address() == 0) {
    return absl::InvalidArgumentError(
        "KvDestination lacks the decode worker's UCX address, rkey or base address");
  }
  transport::KvWriteTarget t;
  t.worker_address = d.ucx_worker_address();
  t.packed_rkey = d.rkey();
  t.base_address = d.base_address();
  t.layout = ToTransportLayout(d.layout());
  t.block_ids.assign(d.block_ids().begin(), d.block_ids().end());
  t.cached_tokens = d.cached_tokens();
  t.landing_rkey = d.landing().rkey();
  t.landing_address = d.landing().address();
  t.landing_tag = d.landing().tag();
  t.landing_hidden_address = d.landing().hidden_address();
  t.landing_hidden_bytes = d.landing().hidden_bytes();
  return t;
}

void ToWireLogprob(const engine::SampledToken& token, v1::TokenLogprob* out) {
  out->set_token_id(token.token);
  out->set_logprob(token.logprob);
  for (const auto& [id, logprob] : token.top_logprobs) {
    v1::TopLogprob* top = out->add_top();
    top->set_token_id(id);
    top->set_logprob(logprob);
  }
}

v1::FinishReason ToWireFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kContextFull:
      return v1::FINISH_REASON_CONTEXT_FULL;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

v1::Usage ToWireUsage(const SequenceUsage& usage) {
  v1::Usage wire;
  wire.set_prompt_tokens(usage.prompt_tokens);
  wire.set_completion_tokens(usage.completion_tokens);
  wire.set_cached_prompt_tokens(usage.cached_prompt_tokens);
  wire.set_draft_tokens(usage.draft_tokens);
  wire.set_accepted_draft_tokens(usage.accepted_draft_tokens);
  return wire;
}

}  // namespace dsv3::worker
