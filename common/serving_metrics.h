#ifndef DSV3_COMMON_SERVING_METRICS_H_
#define DSV3_COMMON_SERVING_METRICS_H_

// The one catalog of dsv3_* serving metrics (docs/metrics.md documents each family: type,
// labels, meaning, which process emits it). Every server binary registers the whole catalog
// at start (ServiceHost::Start), so /metrics always lists every family's HELP and TYPE, and
// dashboards and alert rules can be checked against it before the serving path emits
// anything.
//
//   const auto& m = dsv3::Metrics();
//   m.ttft_seconds.WithLabels({model}).Observe(seconds);
//   m.requests.WithLabels({model, dsv3::StatusLabel(status.code())}).Increment();
//
// WithLabels takes a lock and a map lookup: on hot paths (every token, every expert
// dispatch) look the child up once and keep the reference; children live as long as the
// registry.
//
// Label conventions (the names vLLM and Dynamo users expect):
//   model    the model name as the router's ListModels reports it (vLLM: model_name,
//            Dynamo: model). One value per served model.
//   status   lower-case gRPC code name from StatusLabel(): ok, cancelled, invalid_argument,
//            resource_exhausted, unavailable, internal, ... (at most 17 values).
//   layer, expert   decimal layer index (of the HF checkpoint) and routed-expert index.
//   role, address   a worker as the router sees it: prefill|decode|expert, host:port.
//   backend  expert all-to-all backend: inprocess|ucx|nccl.
//   placement  EPLB: current (the placement in effect) | proposed (the rebalancer's).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/metrics.h"

namespace dsv3 {

// The (layer, expert) series ExpertTokenCounter has handed out (defined in the .cc).
struct ExpertSeriesIndex;

struct ServingMetrics {
  // --- router: request level (labels model[, status]) ---------------------------------
  metrics::Family<metrics::Counter>& requests;           // dsv3_requests_total{model,status}
  metrics::Family<metrics::Counter>& prompt_tokens;      // dsv3_prompt_tokens_total{model}
  metrics::Family<metrics::Counter>& generation_tokens;  // dsv3_generation_tokens_total{model}
  metrics::Family<metrics::Histogram>& ttft_seconds;     // dsv3_time_to_first_token_seconds
  metrics::Family<metrics::Histogram>& inter_token_latency_seconds;
  metrics::Family<metrics::Histogram>& e2e_latency_seconds;      // dsv3_e2e_request_latency_seconds
  metrics::Family<metrics::Histogram>& router_overhead_seconds;  // dsv3_router_overhead_seconds
  metrics::Family<metrics::Histogram>& reserve_seconds;          // dsv3_reserve_seconds
  metrics::Family<metrics::Counter>& migrations;  // dsv3_request_migrations_total{model,reason}
  // --- router: API keys (label key: the key's name, never the key) --------------------
  metrics::Family<metrics::Counter>& api_key_requests;  // dsv3_api_key_requests_total{key,result}
  metrics::Family<metrics::Counter>& api_key_tokens;    // dsv3_api_key_tokens_total{key}
  metrics::Family<metrics::Counter>& api_key_rejected;  // dsv3_api_key_rejected_total{reason}
  // --- router: worker health as the router sees it (labels role, address) -------------
  metrics::Family<metrics::Gauge>& worker_up;           // dsv3_worker_up{role,address}
  metrics::Family<metrics::Counter>& router_decisions;  // dsv3_router_decisions_total{role,reason}
  // --- prefill and decode: scheduler state (label model) ------------------------------
  metrics::Family<metrics::Histogram>& queue_time_seconds;    // dsv3_request_queue_time_seconds
  metrics::Family<metrics::Gauge>& requests_running;          // dsv3_num_requests_running
  metrics::Family<metrics::Gauge>& requests_waiting;          // dsv3_num_requests_waiting
  metrics::Family<metrics::Histogram>& prefill_batch_tokens;  // dsv3_prefill_batch_tokens
  metrics::Family<metrics::Histogram>& decode_batch_size;     // dsv3_decode_batch_size
  // --- decode: paged latent KV pool (label model) -------------------------------------
  metrics::Family<metrics::Gauge>& kv_blocks_used;   // dsv3_kv_cache_used_blocks
  metrics::Family<metrics::Gauge>& kv_blocks_total;  // dsv3_kv_cache_total_blocks
  metrics::Family<metrics::Gauge>& kv_usage_ratio;   // dsv3_kv_cache_usage_ratio
  // --- prefill: KV transfer to decode workers (label model) ---------------------------
  metrics::Family<metrics::Counter>& prefix_cache_lookups;       // dsv3_prefix_cache_lookups_total
  metrics::Family<metrics::Counter>& prefix_cache_query_tokens;  // ..._query_tokens_total
  metrics::Family<metrics::Counter>& prefix_cache_hit_tokens;    // ..._hit_tokens_total
  metrics::Family<metrics::Gauge>& prefix_cache_blocks;          // dsv3_prefix_cache_blocks
  metrics::Family<metrics::Counter>& prefix_cache_evictions;     // ..._evictions_total
  metrics::Family<metrics::Counter>& kv_transfer_bytes;          // dsv3_kv_transfer_bytes_total
  metrics::Family<metrics::Histogram>& kv_transfer_seconds;      // dsv3_kv_transfer_seconds
  metrics::Family<metrics::Counter>& ucx_worker_replacements;  // dsv3_ucx_worker_replacements_total
  // --- decode: MTP speculative decoding (label model) ---------------------------------
  metrics::Family<metrics::Counter>& spec_drafts;           // dsv3_spec_decode_drafts_total
  metrics::Family<metrics::Counter>& spec_draft_tokens;     // dsv3_spec_decode_draft_tokens_total
  metrics::Family<metrics::Counter>& spec_accepted_tokens;  // ..._accepted_tokens_total
  // --- MoE (labels layer, expert / backend) -------------------------------------------
  metrics::Family<metrics::Counter>& expert_tokens;              // dsv3_expert_tokens_total
  metrics::Family<metrics::Counter>& expert_tokens_dropped;      // over the series bound
  metrics::Family<metrics::Histogram>& expert_dispatch_seconds;  // dsv3_expert_dispatch_seconds
  // --- router: EPLB rebalancer -------------------------------------------------------
  metrics::Family<metrics::Gauge>& eplb_imbalance_ratio;  // dsv3_eplb_imbalance_ratio{placement}
  metrics::Family<metrics::Counter>& eplb_rebalances;     // dsv3_eplb_rebalances_total{status}
  metrics::Family<metrics::Gauge>& expert_placement_version;  // dsv3_expert_placement_version
  // Bookkeeping of ExpertTokenCounter (the series bound), shared by copies of this struct.
  std::shared_ptr<ExpertSeriesIndex> expert_series;

  // Registers the catalog in `registry` (idempotent: a second call returns the same
  // families) and returns references to its families.
  static ServingMetrics Register(metrics::Registry& registry);
};

// The catalog in metrics::Registry::Default(), registered on first use.
const ServingMetrics& Metrics();

// Lower-case gRPC code name for the `status` label: "ok", "cancelled", "invalid_argument",
// "deadline_exceeded", "not_found", "resource_exhausted", "unavailable", "internal", ...
std::string StatusLabel(absl::StatusCode code);

// Sets the three KV pool gauges of `model` consistently (usage ratio 0 when total is 0).
void RecordKvBlocks(const ServingMetrics& m, const std::string& model, int64_t used, int64_t total);
// One prefix-cache lookup of `query_tokens` prompt tokens that found `hit_tokens` cached.
void RecordPrefixCacheLookup(const ServingMetrics& m, const std::string& model,
                             int64_t query_tokens, int64_t hit_tokens);
// The cache's size now, and the evictions since the last call.
void RecordPrefixCacheBlocks(const ServingMetrics& m, const std::string& model,
                             int64_t cached_blocks, int64_t new_evictions);

// One family of the catalog, for docs and checks.
struct MetricSpec {
  std::string name;  // without _bucket/_sum/_count
  metrics::MetricType type;
  std::vector<std::string> labels;
  std::string emitted_by;  // roles that set samples: "router", "prefill, decode", ...
};
// Every family of the catalog, in a stable order.
const std::vector<MetricSpec>& ServingMetricSpecs();

// The documented bound on dsv3_expert_tokens_total series of one ServingMetrics (one per
// process: Metrics()): it exports
// only the (layer, expert) pairs it computes, at most num_moe_layers * experts held.
// DeepSeek-V3: 58 MoE layers * 256 routed experts = 14848 series for the whole cluster
// (each expert worker exports its shard, plus redundant replicas). A process never
// exports more than this many through ExpertTokenCounter (a refused lookup is counted in
// dsv3_expert_tokens_dropped_total).
inline constexpr int kMaxExpertTokenSeries = 16384;

// The child of dsv3_expert_tokens_total for (layer, expert), or nullptr when adding it
// would exceed kMaxExpertTokenSeries (the drop is counted). Cache the pointer.
metrics::Counter* ExpertTokenCounter(const ServingMetrics& m, int layer, int expert);

}  // namespace dsv3

#endif  // DSV3_COMMON_SERVING_METRICS_H_
