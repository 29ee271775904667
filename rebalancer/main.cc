// dsv3-rebalancer: EPLB for a live cluster, as one role of its own. Watches every expert
// worker's load, proposes a better placement of the routed experts each interval and applies
// it with a safe two-step switch; copies the experts of an expert worker that stays
// unreachable onto the live ones (failover). One replica acts: with several (a rolling
// update), --leader_dns names them and only the lowest address acts.

#include "absl/flags/flag.h"
#include "common/server_main.h"
#include "experts/expert_rebalancer.h"
#include "rebalancer/rebalancer_service.h"

ABSL_FLAG(std::vector<std::string>, expert_workers, {},
          "Expert workers (dsv3-expert gRPC), host:port,...: whose load EPLB balances.");
ABSL_FLAG(std::string, expert_dns, "",
          "name:port resolved periodically to the expert workers (a headless Service).");
ABSL_FLAG(absl::Duration, dns_interval, absl::Seconds(5), "How often DNS names are re-resolved.");
ABSL_FLAG(absl::Duration, eplb_interval, absl::ZeroDuration(),
          "How often the routed experts are rebalanced over the expert workers, from the load "
          "of the last interval (e.g. 60s); 0: never (failover only).");
ABSL_FLAG(int, eplb_redundant_experts, -1,
          "Redundant expert copies per MoE layer; -1: one per expert worker.");
ABSL_FLAG(int64_t, eplb_min_tokens, 1000,
          "No change on fewer routed (token, expert) pairs than this in an interval (summed "
          "over MoE layers).");
ABSL_FLAG(double, eplb_min_gain, 0.05,
          "Apply a new placement only when it lowers the imbalance (max/mean tokens per expert "
          "worker) by more than this fraction.");
ABSL_FLAG(absl::Duration, expert_failover_after, absl::Seconds(30),
          "An expert worker unreachable this long: its experts get copies on the live expert "
          "workers (0: never; it serves again only when it returns).");
ABSL_FLAG(std::string, leader_dns, "",
          "Several rebalancer replicas (a rolling update): name:port of them all (headless "
          "Service); only the one whose --leader_self is the lowest address behind it acts.");
ABSL_FLAG(std::string, leader_self, "", "This replica's ip:port as --leader_dns lists it.");

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "rebalancer",
      "dsv3-rebalancer: EPLB and expert failover over the expert workers.\n"
      "usage: dsv3-rebalancer --expert_workers HOST:PORT,... [--eplb_interval 60s] [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        dsv3::experts::ExpertRebalancerOptions options;
        options.addresses = absl::GetFlag(FLAGS_expert_workers);
        options.dns = absl::GetFlag(FLAGS_expert_dns);
        options.dns_interval = absl::GetFlag(FLAGS_dns_interval);
        options.interval = absl::GetFlag(FLAGS_eplb_interval);
        options.redundant_per_layer = absl::GetFlag(FLAGS_eplb_redundant_experts);
        options.min_tokens = absl::GetFlag(FLAGS_eplb_min_tokens);
        options.min_gain = absl::GetFlag(FLAGS_eplb_min_gain);
        options.leader_dns = absl::GetFlag(FLAGS_leader_dns);
        options.self_address = absl::GetFlag(FLAGS_leader_self);
        options.failover_after = absl::GetFlag(FLAGS_expert_failover_after);
        auto rebalancer = dsv3::experts::ExpertRebalancer::Start(std::move(options));
        if (!rebalancer.ok()) return rebalancer.status();
        std::shared_ptr<dsv3::experts::ExpertRebalancer> shared = std::move(*rebalancer);
        dsv3::ServerParts parts;
        parts.services.push_back(std::make_unique<dsv3::rebalancer::RebalancerService>(*shared));
        parts.keep_alive.push_back(shared);  // destroyed after the service
        return parts;
      });
}
