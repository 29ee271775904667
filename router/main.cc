// dsv3-router: the public entry point (gRPC dsv3.v1.Inference and the OpenAI-compatible
// HTTP API), tokenizer and chat template, worker discovery and choice, streaming.

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/server_main.h"
#include "common/status_macros.h"
#include "router/front_ends.h"
#include "router/generation_config.h"
#include "router/reasoning/reasoning_parser.h"
#include "router/router_backend.h"
#include "router/tool_calls/tool_call_format.h"
#include "router/worker_notices.h"
#include "router/worker_registry.h"

ABSL_DECLARE_FLAG(absl::Duration, drain_timeout);  // common/service_host.cc

ABSL_FLAG(std::string, tokenizer, "",
          "Directory with tokenizer.json (+ tokenizer_config.json); empty: serve token ids only.");
ABSL_FLAG(std::string, model_name, "", "Name clients use for the model (default: the workers').");
ABSL_FLAG(std::vector<std::string>, prefill, {}, "Prefill workers, host:port,...");
ABSL_FLAG(std::vector<std::string>, decode, {}, "Decode workers, host:port,...");
ABSL_FLAG(std::string, prefill_dns, "",
          "name:port resolved periodically to prefill workers (a headless Service).");
ABSL_FLAG(std::string, decode_dns, "", "name:port resolved periodically to decode workers.");
ABSL_FLAG(absl::Duration, dns_interval, absl::Seconds(5), "How often DNS names are re-resolved.");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens when a request does not say.");
ABSL_FLAG(std::string, reasoning_parser, "none",
          "Reasoning models: deepseek_r1 splits the thinking (up to </think>) into "
          "reasoning_content, apart from the answer; none leaves it in the content.");
ABSL_FLAG(std::string, tool_call_parser, "auto",
          "How the model writes tool calls, parsed into tool_calls: auto (by the model's type: "
          "deepseek_v3 for DeepSeek-V3/R1), deepseek_v3, none (left as text).");
ABSL_FLAG(std::string, router_policy, "kv",
          "How workers are chosen: kv (weighs each worker's prefix-cache overlap with the "
          "prompt against its load), load (load alone), round_robin. docs/architecture.md.");
ABSL_FLAG(double, kv_overlap_weight, 3.0,
          "kv policy: weight of the tokens (prefill) or blocks (decode) a worker has cached, "
          "against its load. Above 1 because tokens computed again load the whole cluster, not "
          "only the request (bench/RESULTS.md: 1 -> 81%, 3 -> 91% of the ideal hit rate).");
ABSL_FLAG(int, decode_prefill_max_tokens, 0,
          "Conditional disaggregation: when the chosen decode worker's prefix cache holds more "
          "of a prompt than any prefill worker's and leaves at most this many tokens to "
          "compute, the decode worker computes them itself in its next step (no prefill "
          "worker, no KV transfer; the step is longer for the whole batch). 0: never.");
ABSL_FLAG(int, migration_limit, 3,
          "How many times a request whose decode worker fails (dies, drains, or loses the KV "
          "transfer) is resumed on another decode worker as prompt + the tokens streamed so "
          "far; the client's stream goes on. 0: the request fails, as before migration.");
ABSL_FLAG(double, load_weight, 1.0,
          "kv and load policies: weight of a prefill worker's queued prompt tokens.");
ABSL_FLAG(absl::Duration, request_timeout, absl::Minutes(10),
          "Deadline of a request that sets none.");
ABSL_FLAG(absl::Duration, max_request_timeout, absl::Hours(1),
          "Longest a request may run: a longer deadline (timeout_ms, the gRPC deadline) is cut "
          "to this, so that no client holds KV blocks and a stream slot for longer.");
ABSL_FLAG(absl::Duration, worker_down_after, absl::Milliseconds(1200),
          "A worker whose load stream (a report every 200ms) is quiet this long is taken out of "
          "routing, and its calls in flight end and resume elsewhere; it is put back when it "
          "reports again. Longer on hosts where a busy worker's reports can be late.");
int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "router",
      "dsv3-router: public gRPC (dsv3.v1.Inference) and OpenAI-compatible HTTP API.\n"
      "usage: dsv3-router --prefill HOST:PORT --decode HOST:PORT [--tokenizer DIR] [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        std::unique_ptr<dsv3::tokenizer::Tokenizer> tokenizer;
        dsv3::router::GenerationDefaults generation_defaults;
        if (!absl::GetFlag(FLAGS_tokenizer).empty()) {
          DSV3_ASSIGN_OR_RETURN(tokenizer,
                                dsv3::tokenizer::Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer)));
          // The checkpoint directory carries the sampling defaults beside the tokenizer.
          DSV3_ASSIGN_OR_RETURN(generation_defaults, dsv3::router::LoadGenerationDefaults(
                                                         absl::GetFlag(FLAGS_tokenizer)));
        } else {
          DSV3_LOG(INFO) << "no --tokenizer: serving token ids only";
        }
        dsv3::router::WorkerRegistryOptions workers;
        workers.prefill_addresses = absl::GetFlag(FLAGS_prefill);
        workers.decode_addresses = absl::GetFlag(FLAGS_decode);
        workers.prefill_dns = absl::GetFlag(FLAGS_prefill_dns);
        workers.decode_dns = absl::GetFlag(FLAGS_decode_dns);
        workers.dns_interval = absl::GetFlag(FLAGS_dns_interval);
        DSV3_ASSIGN_OR_RETURN(workers.policy,
                              dsv3::router::ParseRoutingPolicy(absl::GetFlag(FLAGS_router_policy)));
        workers.kv_overlap_weight = absl::GetFlag(FLAGS_kv_overlap_weight);
        workers.load_weight = absl::GetFlag(FLAGS_load_weight);
        workers.down_after = absl::GetFlag(FLAGS_worker_down_after);
        if (workers.down_after < absl::Milliseconds(400)) {
          return absl::InvalidArgumentError(
              "--worker_down_after must be at least 400ms (two load reports)");
        }
        std::shared_ptr<dsv3::router::WorkerRegistry> registry =
            dsv3::router::WorkerRegistry::Start(workers);
        dsv3::router::RouterBackendOptions options;
        options.model_name = absl::GetFlag(FLAGS_model_name);
        options.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
        options.decode_prefill_max_tokens = absl::GetFlag(FLAGS_decode_prefill_max_tokens);
        options.default_timeout = absl::GetFlag(FLAGS_request_timeout);
        options.max_timeout = absl::GetFlag(FLAGS_max_request_timeout);
        if (options.max_timeout <= absl::ZeroDuration()) {
          return absl::InvalidArgumentError("--max_request_timeout must be > 0");
        }
        options.migration_limit = absl::GetFlag(FLAGS_migration_limit);
        options.tool_call_parser = absl::GetFlag(FLAGS_tool_call_parser);
        options.reasoning_parser = absl::GetFlag(FLAGS_reasoning_parser);
        options.generation_defaults = generation_defaults;
        if (auto parser = dsv3::router::NewReasoningParser(options.reasoning_parser);
            !parser.ok()) {
          return parser.status();
        }
        if (options.tool_call_parser != "auto") {
          auto format = dsv3::router::ToolCallFormatByName(options.tool_call_parser);
          if (!format.ok()) return format.status();
        }
        if (options.migration_limit < 0) {
          return absl::InvalidArgumentError("--migration_limit must be >= 0");
        }
        auto backend =
            std::make_shared<dsv3::router::RouterBackend>(options, *registry, std::move(tokenizer));
        dsv3::ServerParts parts;
        // Destroyed in order, after the services: the backend, then (at most 3 s) the lease
        // Releases and prefill cancels its last requests sent, then the registry it uses.
        parts.keep_alive.push_back(backend);
        parts.keep_alive.push_back(std::shared_ptr<void>(nullptr, [](void*) {
          if (!dsv3::router::WaitForWorkerNotices(absl::Seconds(3))) {
            DSV3_LOG(WARNING) << "exiting with lease releases still unanswered";
          }
        }));
        parts.keep_alive.push_back(registry);
        DSV3_RETURN_IF_ERROR(dsv3::router::AddFrontEnds(*backend, parts));
        parts.ready = [backend = backend.get()] { return backend->Ready(); };
        // Streams in flight finish (up to --drain_timeout) before the gRPC server stops.
        parts.on_draining = [backend = backend.get()] {
          backend->Drain(absl::Now() + absl::GetFlag(FLAGS_drain_timeout));
        };
        return parts;
      });
}
