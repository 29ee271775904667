// dsv3-router: the public entry point (gRPC dsv3.v1.Inference and the OpenAI-compatible
// HTTP API), tokenizer and chat template, worker discovery and choice, streaming.

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/server_main.h"
#include "router/expert_rebalancer.h"
#include "router/front_ends.h"
#include "router/router_backend.h"
#include "router/worker_registry.h"

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
ABSL_FLAG(absl::Duration, request_timeout, absl::Minutes(10),
          "Deadline of a request that sets none.");
ABSL_FLAG(std::vector<std::string>, expert_workers, {},
          "Expert workers (dsv3-expert gRPC), host:port,...: whose load EPLB balances.");
ABSL_FLAG(std::string, expert_dns, "",
          "name:port resolved periodically to the expert workers (a headless Service).");
ABSL_FLAG(absl::Duration, eplb_interval, absl::ZeroDuration(),
          "EPLB: how often the routed experts are rebalanced over the expert workers, from "
          "the load of the last interval (e.g. 60s); 0: never.");
ABSL_FLAG(int, eplb_redundant_experts, -1,
          "EPLB: redundant expert copies per MoE layer; -1: one per expert worker.");
ABSL_FLAG(int64_t, eplb_min_tokens, 1000,
          "EPLB: no change on fewer routed (token, expert) pairs than this in an interval "
          "(summed over MoE layers).");
ABSL_FLAG(double, eplb_min_gain, 0.05,
          "EPLB: apply a new placement only when it lowers the imbalance (max/mean tokens per "
          "expert worker) by more than this fraction.");
ABSL_FLAG(std::string, eplb_leader_dns, "",
          "EPLB with several routers: name:port of the routers (headless Service); only the "
          "router whose --eplb_self is the lowest address behind it rebalances.");
ABSL_FLAG(absl::Duration, expert_failover_after, absl::Seconds(30),
          "An expert worker unreachable this long: its experts get copies on the live expert "
          "workers (0: never; it serves again only when it returns).");
ABSL_FLAG(std::string, eplb_self, "", "EPLB: this router's ip:port as --eplb_leader_dns lists it.");

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "router",
      "dsv3-router: public gRPC (dsv3.v1.Inference) and OpenAI-compatible HTTP API.\n"
      "usage: dsv3-router --prefill HOST:PORT --decode HOST:PORT [--tokenizer DIR] [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        std::unique_ptr<dsv3::tokenizer::Tokenizer> tokenizer;
        if (!absl::GetFlag(FLAGS_tokenizer).empty()) {
          auto loaded = dsv3::tokenizer::Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer));
          if (!loaded.ok()) return loaded.status();
          tokenizer = std::move(*loaded);
        } else {
          DSV3_LOG(INFO) << "no --tokenizer: serving token ids only";
        }
        dsv3::router::WorkerRegistryOptions workers;
        workers.prefill_addresses = absl::GetFlag(FLAGS_prefill);
        workers.decode_addresses = absl::GetFlag(FLAGS_decode);
        workers.prefill_dns = absl::GetFlag(FLAGS_prefill_dns);
        workers.decode_dns = absl::GetFlag(FLAGS_decode_dns);
        workers.dns_interval = absl::GetFlag(FLAGS_dns_interval);
        std::shared_ptr<dsv3::router::WorkerRegistry> registry =
            dsv3::router::WorkerRegistry::Start(workers);
        dsv3::router::RouterBackendOptions options;
        options.model_name = absl::GetFlag(FLAGS_model_name);
        options.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
        options.default_timeout = absl::GetFlag(FLAGS_request_timeout);
        auto backend = std::make_shared<dsv3::router::RouterBackend>(options, *registry,
                                                                     std::move(tokenizer));
        dsv3::ServerParts parts;
        // Destroyed in order, after the services: the backend, then the registry it uses.
        parts.keep_alive.push_back(backend);
        parts.keep_alive.push_back(registry);
        const bool experts = !absl::GetFlag(FLAGS_expert_workers).empty() ||
                             !absl::GetFlag(FLAGS_expert_dns).empty();
        if (experts && (absl::GetFlag(FLAGS_eplb_interval) > absl::ZeroDuration() ||
                        absl::GetFlag(FLAGS_expert_failover_after) > absl::ZeroDuration())) {
          dsv3::router::ExpertRebalancerOptions eplb;
          eplb.addresses = absl::GetFlag(FLAGS_expert_workers);
          eplb.dns = absl::GetFlag(FLAGS_expert_dns);
          eplb.dns_interval = absl::GetFlag(FLAGS_dns_interval);
          eplb.interval = absl::GetFlag(FLAGS_eplb_interval);
          eplb.redundant_per_layer = absl::GetFlag(FLAGS_eplb_redundant_experts);
          eplb.min_tokens = absl::GetFlag(FLAGS_eplb_min_tokens);
          eplb.min_gain = absl::GetFlag(FLAGS_eplb_min_gain);
          eplb.leader_dns = absl::GetFlag(FLAGS_eplb_leader_dns);
          eplb.self_address = absl::GetFlag(FLAGS_eplb_self);
          eplb.failover_after = absl::GetFlag(FLAGS_expert_failover_after);
          auto rebalancer = dsv3::router::ExpertRebalancer::Start(std::move(eplb));
          if (!rebalancer.ok()) return rebalancer.status();
          parts.keep_alive.push_back(
              std::shared_ptr<dsv3::router::ExpertRebalancer>(std::move(*rebalancer)));
        } else if (absl::GetFlag(FLAGS_eplb_interval) > absl::ZeroDuration()) {
          return absl::InvalidArgumentError(
              "--eplb_interval needs the expert workers (--expert_workers or --expert_dns)");
        } else if (experts) {
          DSV3_LOG(INFO) << "EPLB off (--eplb_interval=0): the expert placement stays as it is";
        }
        dsv3::router::AddFrontEnds(*backend, parts);
        return parts;
      });
}
