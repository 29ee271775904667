#ifndef DSV3_WORKER_COMMON_WORKER_CONVERSIONS_H_
#define DSV3_WORKER_COMMON_WORKER_CONVERSIONS_H_

// Conversions shared by the prefill and decode workers between the wire contract
// (dsv3.v1 protos), the engine's types and the transport's: sampling parameters, the KV
// pool layout, the KV destination, how a sequence ended.

#include "absl/status/statusor.h"
#include "dsv3/v1/worker.pb.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "transport/kv_transfer/kv_pool_layout.h"
#include "transport/kv_transfer/kv_writer.h"
#include "worker_common/sequence_end.h"

namespace dsv3::worker {

// Wire sampling parameters -> the engine's, with the wire's "0 means default" rules.
// `seed` is the request's resolved seed (the router fills it when the client did not).
engine::SamplingParams ToEngineSampling(const v1::SamplingParams& wire);

// Latent KV rows are float32 in the engine's pool.
v1::KvLayout ToWireLayout(const engine::KvCacheLayout& layout, int num_mtp_layers);
transport::KvPoolLayout ToTransportLayout(const v1::KvLayout& wire);
transport::KvPoolLayout ToTransportLayout(const engine::KvCacheLayout& layout);

// KvDestination -> what the KV writer needs; INVALID_ARGUMENT when fields are missing.
absl::StatusOr<transport::KvWriteTarget> ToWriteTarget(const v1::KvDestination& destination);

// Converts an engine token (with logprobs) into its wire form.
void ToWireLogprob(const engine::SampledToken& token, v1::TokenLogprob* out);

// A sequence's end as the decode scheduler reports it -> the wire's.
v1::FinishReason ToWireFinishReason(FinishReason reason);
v1::Usage ToWireUsage(const SequenceUsage& usage);

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_WORKER_CONVERSIONS_H_
