#include "common/serving_metrics.h"

#include <cstdlib>
#include <map>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace dsv3 {

struct ExpertSeriesIndex {
  absl::Mutex mu;
  std::map<std::pair<int, int>, metrics::Counter*> pairs ABSL_GUARDED_BY(mu);
};

namespace {

using metrics::MetricType;

// One family of the catalog: the single place where names, help, labels and buckets live.
struct Definition {
  MetricSpec spec;
  std::string help;
  std::vector<double> buckets;  // histograms only
};

// End-to-end latency: a generation may run for minutes.
std::vector<double> RequestDurationBuckets() {
  return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800};
}

const std::vector<Definition>& Definitions() {
  static const auto* definitions = new std::vector<Definition>{
      // Router.
      {{"dsv3_requests_total", MetricType::kCounter, {"model", "status"}, "router"},
       "Finished requests by final status (lower-case gRPC code name; ok for success).",
       {}},
      {{"dsv3_prompt_tokens_total", MetricType::kCounter, {"model"}, "router"},
       "Prompt tokens of admitted requests.",
       {}},
      {{"dsv3_generation_tokens_total", MetricType::kCounter, {"model"}, "router"},
       "Generated tokens streamed to clients.",
       {}},
      {{"dsv3_time_to_first_token_seconds", MetricType::kHistogram, {"model"}, "router"},
       "Time from request arrival at the router to its first generated token, in seconds.",
       metrics::LatencyBuckets()},
      {{"dsv3_inter_token_latency_seconds", MetricType::kHistogram, {"model"}, "router"},
       "Time between consecutive generated tokens of one request, in seconds.",
       metrics::LatencyBuckets()},
      {{"dsv3_e2e_request_latency_seconds", MetricType::kHistogram, {"model"}, "router"},
       "Time from request arrival at the router to its last token or error, in seconds.",
       RequestDurationBuckets()},
      {{"dsv3_router_overhead_seconds", MetricType::kHistogram, {"model"}, "router"},
       "Time to first token minus the prefill worker's own time (queued, computing, sending "
       "the KV): what the router, the Reserve and the Prefill calls add, in seconds.",
       metrics::ExponentialBuckets(0.0001, 2, 16)},
      {{"dsv3_reserve_seconds", MetricType::kHistogram, {"model"}, "router"},
       "Round trip of a decode worker's Reserve (KV blocks for a request), in seconds.",
       metrics::ExponentialBuckets(0.0001, 2, 16)},
      {{"dsv3_request_migrations_total", MetricType::kCounter, {"model", "reason"}, "router"},
       "Requests resumed on another decode worker (--migration_limit) as prompt + the tokens "
       "streamed so far, by why: decode_failed (the decode stream broke: the worker died or "
       "is draining), decode_stalled (the worker stopped answering), kv_transfer_failed (the "
       "decode worker failed while the prompt's KV was sent to it); prefill_stalled: the "
       "prompt started again on another prefill worker, its own stopped answering.",
       {}},
      {{"dsv3_api_key_requests_total", MetricType::kCounter, {"key", "result"}, "router"},
       "Generations per API key (--api_keys; the key's name), by result: admitted, or "
       "refused over a limit: rate_limited (requests per second), token_limited (tokens per "
       "minute), stream_limited (requests in flight).",
       {}},
      {{"dsv3_api_key_tokens_total", MetricType::kCounter, {"key"}, "router"},
       "Tokens (prompt + completion) the generations of each API key used.",
       {}},
      {{"dsv3_api_key_rejected_total", MetricType::kCounter, {"reason"}, "router"},
       "Requests refused as unauthenticated (--api_keys), by reason: missing (no "
       "Authorization), malformed (not 'Bearer KEY'), invalid (no such key).",
       {}},
      {{"dsv3_worker_up", MetricType::kGauge, {"role", "address"}, "router"},
       "1 when the router's health checks reach the worker and it is SERVING, else 0.",
       {}},
      {{"dsv3_router_decisions_total", MetricType::kCounter, {"role", "reason"}, "router"},
       "Workers chosen for requests, by role and why: prefix_overlap (the kv policy chose a "
       "worker whose prefix cache holds the prompt's first blocks), load (by load alone), "
       "round_robin, decode_worker (role prefill: the decode worker computed the prompt's "
       "short uncached suffix itself).",
       {}},
      // Prefill and decode workers.
      {{"dsv3_request_queue_time_seconds", MetricType::kHistogram, {"model"}, "prefill, decode"},
       "Time a request waited in the worker's queue before its first forward pass, in seconds.",
       metrics::LatencyBuckets()},
      {{"dsv3_num_requests_running", MetricType::kGauge, {"model"}, "prefill, decode"},
       "Requests in the worker's running batch.",
       {}},
      {{"dsv3_num_requests_waiting", MetricType::kGauge, {"model"}, "prefill, decode"},
       "Requests queued at the worker, waiting for a batch slot or KV blocks.",
       {}},
      {{"dsv3_prefill_batch_tokens", MetricType::kHistogram, {"model"}, "prefill"},
       "Prompt tokens per prefill forward pass (all sequences of the batch, after chunking).",
       metrics::ExponentialBuckets(1, 2, 16)},
      {{"dsv3_decode_batch_size", MetricType::kHistogram, {"model"}, "decode"},
       "Sequences per decode step.",
       {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512}},
      {{"dsv3_kv_cache_used_blocks", MetricType::kGauge, {"model"}, "decode"},
       "KV pool blocks held by running requests and leases (blocks only the prefix cache holds "
       "are dsv3_prefix_cache_blocks).",
       {}},
      {{"dsv3_kv_cache_total_blocks", MetricType::kGauge, {"model"}, "decode"},
       "KV pool blocks in total.",
       {}},
      {{"dsv3_kv_cache_usage_ratio", MetricType::kGauge, {"model"}, "decode"},
       "Used over total KV pool blocks (0 to 1).",
       {}},
      {{"dsv3_prefix_cache_lookups_total", MetricType::kCounter, {"model"}, "prefill, decode"},
       "Prompts looked up in the worker's prefix cache.",
       {}},
      {{"dsv3_prefix_cache_query_tokens_total", MetricType::kCounter, {"model"}, "prefill, decode"},
       "Prompt tokens looked up in the worker's prefix cache.",
       {}},
      {{"dsv3_prefix_cache_hit_tokens_total", MetricType::kCounter, {"model"}, "prefill, decode"},
       "Prompt tokens found in the worker's prefix cache (not computed again on a prefill "
       "worker, not sent again on a decode worker).",
       {}},
      {{"dsv3_prefix_cache_blocks", MetricType::kGauge, {"model"}, "prefill, decode"},
       "KV blocks held by the prefix cache and by no request (evicted, least recently used "
       "first, when a request needs the room).",
       {}},
      {{"dsv3_prefix_cache_evictions_total", MetricType::kCounter, {"model"}, "prefill, decode"},
       "Cached KV blocks evicted from the prefix cache.",
       {}},
      {{"dsv3_kv_transfer_bytes_total", MetricType::kCounter, {"model"}, "prefill"},
       "Latent KV bytes written into decode workers' pools.",
       {}},
      {{"dsv3_kv_transfer_seconds", MetricType::kHistogram, {"model"}, "prefill"},
       "Per request, time from the first KV put to the flush of the last one, in seconds.",
       metrics::ExponentialBuckets(0.0001, 2, 18)},
      {{"dsv3_ucx_worker_replacements_total", MetricType::kCounter, {"model"}, "prefill, decode"},
       "Times this worker moved to a new UCX worker because a peer that died mid-message "
       "stopped its shared-memory receive queue (over shared memory only).",
       {}},
      {{"dsv3_spec_decode_drafts_total", MetricType::kCounter, {"model"}, "decode"},
       "Speculative (MTP) draft rounds verified.",
       {}},
      {{"dsv3_spec_decode_draft_tokens_total", MetricType::kCounter, {"model"}, "decode"},
       "Tokens proposed by the MTP draft.",
       {}},
      {{"dsv3_spec_decode_accepted_tokens_total", MetricType::kCounter, {"model"}, "decode"},
       "Draft tokens accepted by the verification pass.",
       {}},
      // MoE.
      {{"dsv3_expert_tokens_total",
        MetricType::kCounter,
        {"layer", "expert"},
        "expert (prefill, decode when colocated)"},
       "Tokens routed to each expert this process computes (at most 16384 series per "
       "process; see docs/metrics.md).",
       {}},
      {{"dsv3_expert_tokens_dropped_total",
        MetricType::kCounter,
        {},
        "expert (prefill, decode when colocated)"},
       "Lookups of a new (layer, expert) series refused because the process already "
       "exports the bound (16384).",
       {}},
      {{"dsv3_expert_dispatch_seconds", MetricType::kHistogram, {"backend"}, "prefill, decode"},
       "Per MoE layer, time from dispatching tokens to expert workers to having their "
       "combined outputs, in seconds.",
       metrics::ExponentialBuckets(0.00005, 2, 18)},
      // EPLB (rebalancer).
      {{"dsv3_eplb_imbalance_ratio", MetricType::kGauge, {"placement"}, "rebalancer"},
       "Max over mean of the routed tokens per expert worker over the last EPLB window, for "
       "the placement in effect (current) and the rebalancer's proposal (proposed).",
       {}},
      {{"dsv3_eplb_rebalances_total", MetricType::kCounter, {"status"}, "rebalancer"},
       "EPLB placement changes attempted, by outcome (ok: every expert worker holds the new "
       "placement).",
       {}},
      {{"dsv3_expert_placement_version", MetricType::kGauge, {}, "rebalancer"},
       "Version of the expert placement in effect, as the EPLB rebalancer knows it.",
       {}},
  };
  return *definitions;
}

const Definition& Find(absl::string_view name) {
  for (const Definition& d : Definitions()) {
    if (d.spec.name == name) return d;
  }
  DSV3_LOG(ERROR) << "serving metrics: no definition of " << name;
  std::abort();
}

void RegisterDefinition(metrics::Registry& registry, const Definition& d) {
  switch (d.spec.type) {
    case MetricType::kCounter:
      registry.AddCounter(d.spec.name, d.help, d.spec.labels);
      break;
    case MetricType::kGauge:
      registry.AddGauge(d.spec.name, d.help, d.spec.labels);
      break;
    case MetricType::kHistogram:
      registry.AddHistogram(d.spec.name, d.help, d.buckets, d.spec.labels);
      break;
  }
}

}  // namespace

ServingMetrics ServingMetrics::Register(metrics::Registry& registry) {
  // Every definition, so that nothing in the catalog is left unexposed.
  for (const Definition& d : Definitions()) RegisterDefinition(registry, d);
  // Adding again returns the family just registered.
  auto counter = [&registry](absl::string_view name) -> metrics::Family<metrics::Counter>& {
    const Definition& d = Find(name);
    return registry.AddCounter(d.spec.name, d.help, d.spec.labels);
  };
  auto gauge = [&registry](absl::string_view name) -> metrics::Family<metrics::Gauge>& {
    const Definition& d = Find(name);
    return registry.AddGauge(d.spec.name, d.help, d.spec.labels);
  };
  auto histogram = [&registry](absl::string_view name) -> metrics::Family<metrics::Histogram>& {
    const Definition& d = Find(name);
    return registry.AddHistogram(d.spec.name, d.help, d.buckets, d.spec.labels);
  };
  return ServingMetrics{
      .requests = counter("dsv3_requests_total"),
      .prompt_tokens = counter("dsv3_prompt_tokens_total"),
      .generation_tokens = counter("dsv3_generation_tokens_total"),
      .ttft_seconds = histogram("dsv3_time_to_first_token_seconds"),
      .inter_token_latency_seconds = histogram("dsv3_inter_token_latency_seconds"),
      .e2e_latency_seconds = histogram("dsv3_e2e_request_latency_seconds"),
      .router_overhead_seconds = histogram("dsv3_router_overhead_seconds"),
      .reserve_seconds = histogram("dsv3_reserve_seconds"),
      .migrations = counter("dsv3_request_migrations_total"),
      .api_key_requests = counter("dsv3_api_key_requests_total"),
      .api_key_tokens = counter("dsv3_api_key_tokens_total"),
      .api_key_rejected = counter("dsv3_api_key_rejected_total"),
      .worker_up = gauge("dsv3_worker_up"),
      .router_decisions = counter("dsv3_router_decisions_total"),
      .queue_time_seconds = histogram("dsv3_request_queue_time_seconds"),
      .requests_running = gauge("dsv3_num_requests_running"),
      .requests_waiting = gauge("dsv3_num_requests_waiting"),
      .prefill_batch_tokens = histogram("dsv3_prefill_batch_tokens"),
      .decode_batch_size = histogram("dsv3_decode_batch_size"),
      .kv_blocks_used = gauge("dsv3_kv_cache_used_blocks"),
      .kv_blocks_total = gauge("dsv3_kv_cache_total_blocks"),
      .kv_usage_ratio = gauge("dsv3_kv_cache_usage_ratio"),
      .prefix_cache_lookups = counter("dsv3_prefix_cache_lookups_total"),
      .prefix_cache_query_tokens = counter("dsv3_prefix_cache_query_tokens_total"),
      .prefix_cache_hit_tokens = counter("dsv3_prefix_cache_hit_tokens_total"),
      .prefix_cache_blocks = gauge("dsv3_prefix_cache_blocks"),
      .prefix_cache_evictions = counter("dsv3_prefix_cache_evictions_total"),
      .kv_transfer_bytes = counter("dsv3_kv_transfer_bytes_total"),
      .kv_transfer_seconds = histogram("dsv3_kv_transfer_seconds"),
      .ucx_worker_replacements = counter("dsv3_ucx_worker_replacements_total"),
      .spec_drafts = counter("dsv3_spec_decode_drafts_total"),
      .spec_draft_tokens = counter("dsv3_spec_decode_draft_tokens_total"),
      .spec_accepted_tokens = counter("dsv3_spec_decode_accepted_tokens_total"),
      .expert_tokens = counter("dsv3_expert_tokens_total"),
      .expert_tokens_dropped = counter("dsv3_expert_tokens_dropped_total"),
      .expert_dispatch_seconds = histogram("dsv3_expert_dispatch_seconds"),
      .eplb_imbalance_ratio = gauge("dsv3_eplb_imbalance_ratio"),
      .eplb_rebalances = counter("dsv3_eplb_rebalances_total"),
      .expert_placement_version = gauge("dsv3_expert_placement_version"),
      .expert_series = std::make_shared<ExpertSeriesIndex>(),
  };
}

const ServingMetrics& Metrics() {
  static const auto* serving =
      new ServingMetrics(ServingMetrics::Register(metrics::Registry::Default()));
  return *serving;
}

std::string StatusLabel(absl::StatusCode code) {
  if (code == absl::StatusCode::kOk) return "ok";
  // absl names the codes in upper case ("RESOURCE_EXHAUSTED"); unknown values become
  // "unknown" so the label stays bounded.
  std::string name = absl::StatusCodeToString(code);
  if (name.empty() || name.find(' ') != std::string::npos || name.find('(') != std::string::npos) {
    return "unknown";
  }
  return absl::AsciiStrToLower(name);
}

void RecordKvBlocks(const ServingMetrics& m, const std::string& model, int64_t used,
                    int64_t total) {
  m.kv_blocks_used.WithLabels({model}).Set(static_cast<double>(used));
  m.kv_blocks_total.WithLabels({model}).Set(static_cast<double>(total));
  m.kv_usage_ratio.WithLabels({model}).Set(
      total > 0 ? static_cast<double>(used) / static_cast<double>(total) : 0.0);
}

void RecordPrefixCacheLookup(const ServingMetrics& m, const std::string& model,
                             int64_t query_tokens, int64_t hit_tokens) {
  m.prefix_cache_lookups.WithLabels({model}).Increment();
  m.prefix_cache_query_tokens.WithLabels({model}).Increment(static_cast<double>(query_tokens));
  m.prefix_cache_hit_tokens.WithLabels({model}).Increment(static_cast<double>(hit_tokens));
}

void RecordPrefixCacheBlocks(const ServingMetrics& m, const std::string& model,
                             int64_t cached_blocks, int64_t new_evictions) {
  m.prefix_cache_blocks.WithLabels({model}).Set(static_cast<double>(cached_blocks));
  if (new_evictions > 0) {
    m.prefix_cache_evictions.WithLabels({model}).Increment(static_cast<double>(new_evictions));
  }
}

const std::vector<MetricSpec>& ServingMetricSpecs() {
  static const auto* specs = [] {
    auto* out = new std::vector<MetricSpec>();
    for (const Definition& d : Definitions()) out->push_back(d.spec);
    return out;
  }();
  return *specs;
}

metrics::Counter* ExpertTokenCounter(const ServingMetrics& m, int layer, int expert) {
  if (layer < 0 || expert < 0) return nullptr;
  ExpertSeriesIndex& index = *m.expert_series;
  absl::MutexLock lock(&index.mu);
  auto& pairs = index.pairs;
  auto it = pairs.find({layer, expert});
  if (it != pairs.end()) return it->second;
  if (pairs.size() >= static_cast<size_t>(kMaxExpertTokenSeries)) {
    m.expert_tokens_dropped.Get().Increment();
    return nullptr;
  }
  metrics::Counter* counter =
      &m.expert_tokens.WithLabels({absl::StrCat(layer), absl::StrCat(expert)});
  pairs[{layer, expert}] = counter;
  return counter;
}

}  // namespace dsv3
