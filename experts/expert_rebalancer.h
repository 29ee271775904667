#ifndef DSV3_EXPERTS_EXPERT_REBALANCER_H_
#define DSV3_EXPERTS_EXPERT_REBALANCER_H_

// EPLB in a live cluster (the dsv3-rebalancer process): it watches every expert worker's
// WatchExpertLoad stream (one session per worker, through the control plane's WatchedPeers), adds
// up the tokens per (layer, expert) over a window, and once per interval weighs the placement in
// effect against RebalanceExperts' proposal on that window's load. A proposal that lowers the
// imbalance (max/mean tokens per worker) by more than min_gain is applied to every expert worker
// with ApplyPlacement.
//
// The switch never routes a token to a worker that does not hold its expert yet. An
// attention worker takes the newest placement any expert worker announces, so a plain "apply
// the new map everywhere" would let it route by the new map while some worker is still
// loading. Instead (PlanPlacementSwitch):
//   1. load: each worker that gains experts gets, alone, the old map plus its own new copies
//      (routing by that map only reaches copies it has loaded); all in parallel;
//   2. switch: every worker gets the new map, in parallel. Each already holds its old and new
//      experts (an expert worker keeps the previous map's experts until the next change), so
//      attention workers on the old, an intermediate or the new map are all served.
// A failed step is logged and the next interval tries again. Whatever a failure leaves, the
// rebalancer converges: the highest version any worker holds is taken as the placement in
// effect and re-applied to every worker that reports an older one (which is also how an
// expert worker that restarted, back on the default map, gets the current one again).
//
// With several rebalancer replicas (a rolling update) only one must act (two could apply different
// maps under the same version): with leader_dns set, a replica acts only while its self_address is
// the lowest address that name resolves to (the rebalancers' headless Service); the others only
// watch.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/watched_peers.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "experts/eplb.h"
#include "experts/expert_placement.h"
#include "experts/rebalance_plan.h"

namespace dsv3::experts {

struct ExpertRebalancerOptions {
  std::vector<std::string> addresses;  // expert workers' gRPC host:port
  std::string dns;                     // "name:port" resolved to every expert worker
  absl::Duration dns_interval = absl::Seconds(5);
  // One decision per interval, on the tokens of that interval.
  absl::Duration interval = absl::Seconds(60);
  // Redundant copies per MoE layer; < 0: the number of expert workers.
  int32_t redundant_per_layer = -1;
  // Fewer routed (token, expert) pairs than this in a window (summed over layers): no change.
  int64_t min_tokens = 1000;
  // Apply only when the proposal's imbalance is below current * (1 - min_gain).
  double min_gain = 0.05;
  // Leader election among rebalancer replicas (see above); empty leader_dns: always act.
  std::string leader_dns;
  std::string self_address;
  // Failover: once no expert worker has reported as some index for this long (a worker
  // never heard from counts from the rebalancer's start), every expert whose copies are all
  // on such workers gets a copy on a live worker (0: never). The dead worker's own entries
  // stay: when it returns it gets the placement in effect again.
  absl::Duration failover_after = absl::ZeroDuration();
  // Deadline of one ApplyPlacement (the worker loads its experts from the checkpoint).
  absl::Duration apply_timeout = absl::Minutes(10);
};

class ExpertRebalancer {
 public:
  // Starts watching and deciding; InvalidArgument on unusable options.
  static absl::StatusOr<std::unique_ptr<ExpertRebalancer>> Start(ExpertRebalancerOptions options);
  ~ExpertRebalancer();

  // What this replica sees now (the Rebalancer service's answer).
  v1::RebalancerStatus Status() const;
  ExpertRebalancer(const ExpertRebalancer&) = delete;
  ExpertRebalancer& operator=(const ExpertRebalancer&) = delete;

 private:
  struct Worker;
  explicit ExpertRebalancer(ExpertRebalancerOptions options);
  // One session with an expert worker: its load stream until it ends.
  absl::Status Session(PeerSession& peer);
  void OnPeerEvent(const PeerEvent& event);
  void Control();
  bool IsLeader();
  // Takes the highest version any worker reports as the placement in effect.
  void SyncCurrent();
  // Re-applies the placement in effect to workers that report an older one.
  void ConvergeStale();
  void Failover();
  // One interval: measures (every replica), decides and applies (the leader only).
  void Decide(bool leader);
  absl::Status ApplyStep(const PlacementStep& step);
  // Index -> address of every worker of the placement in effect, or why not all are known.
  absl::StatusOr<std::vector<std::string>> WorkerAddresses(int32_t num_workers);
  absl::StatusOr<ExpertPlacement> FetchPlacement(const std::string& address);
  std::shared_ptr<v1::Expert::Stub> StubOf(const std::string& address);

  const ExpertRebalancerOptions options_;
  const int report_interval_ms_;

  mutable absl::Mutex mu_;
  // Failover: when each worker index last reported, and when this rebalancer started.
  std::map<int32_t, absl::Time> last_seen_ ABSL_GUARDED_BY(mu_);
  absl::Time started_;
  std::map<std::string, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  ExpertLoadWindow window_ ABSL_GUARDED_BY(mu_);
  int64_t max_version_seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;  // as the control thread last decided
  std::vector<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);  // cancelled on shutdown
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  // The control thread's own.
  std::unique_ptr<ExpertPlacement> current_;
  std::vector<std::string> leader_peers_;
  std::map<std::string, absl::Time> retry_after_;  // re-applying to a worker failed
  absl::Time leader_resolved_ = absl::InfinitePast();
  std::thread control_;
  // Last: its sessions and events use everything above.
  std::unique_ptr<WatchedPeers> peers_;
};

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_EXPERT_REBALANCER_H_
