#ifndef DSV3_WORKER_COMMON_REMOTE_EXPERTS_H_
#define DSV3_WORKER_COMMON_REMOTE_EXPERTS_H_

// An attention worker's routed experts on expert workers (`dsv3-expert`): the engine's
// RoutedExpertExecutor over the UCX expert all-to-all. It joins every expert worker over
// gRPC (Expert.Join: UCX addresses, member index, placement), plans each MoE layer by the
// placement (replicas share a hot expert's tokens), and overlaps the shared expert with the
// exchange. A worker that fails is marked down: its tokens go to replicas when every expert
// they need has one, else the forward step fails UNAVAILABLE; the control plane's
// WatchedPeers (common/watched_peers.h) keeps the expert workers (--expert_workers, and what
// --expert_dns resolves to) and joins each again whenever its connection drops. A newer placement
// (the EPLB rebalancer's) announced in combine answers is fetched in the background and taken at
// the next step boundary (the first MoE layer of a forward step).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/watched_peers.h"
#include "engine/model_config.h"
#include "engine/routed_experts.h"
#include "experts/expert_placement.h"
#include "transport/ucx/ucx_expert_client.h"

ABSL_DECLARE_FLAG(std::string, expert_workers);
ABSL_DECLARE_FLAG(std::string, expert_dns);
ABSL_DECLARE_FLAG(absl::Duration, expert_timeout);
ABSL_DECLARE_FLAG(absl::Duration, expert_wait);

namespace dsv3::worker {

struct RemoteExpertsOptions {
  std::vector<std::string> addresses;  // gRPC host:port of each expert worker
  std::string dns;                     // host:port resolved to every address behind it
  absl::Duration exchange_timeout = absl::Seconds(10);  // one MoE layer's all-to-all
  std::string member_id;                                // how this worker names itself in Join
};

// From --expert_workers / --expert_dns / --expert_timeout; nullopt-like empty addresses and
// dns when neither is set (colocated experts).
RemoteExpertsOptions RemoteExpertsOptionsFromFlags(const std::string& member_id);
bool RemoteExpertsConfigured(const RemoteExpertsOptions& options);

class RemoteExpertExecutor final : public engine::RoutedExpertExecutor {
 public:
  static absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> Create(
      const engine::ModelConfig& config, transport::UcxContext& ucx, RemoteExpertsOptions options);
  ~RemoteExpertExecutor() override;

  // Until every expert of the placement has a connected worker (or the deadline).
  absl::Status WaitUntilReady(absl::Time deadline);
  bool ready() const;
  int64_t placement_version() const;

  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, engine::ExpertOutputs* outputs,
                   absl::FunctionRef<void()> overlapped) override;

 private:
  RemoteExpertExecutor(const engine::ModelConfig& config, transport::UcxContext& ucx,
                       RemoteExpertsOptions options);
  // One session with an expert worker: Join, then up while its connection holds.
  absl::Status Session(PeerSession& peer);
  void OnPeerEvent(const PeerEvent& event);
  // Joins the expert worker (Expert.Join, then the UCX connection); its worker index.
  absl::StatusOr<int32_t> JoinOne(PeerSession& peer, grpc::ClientContext* ctx);
  void FetchPlacements();  // background: fetch newer placements
  // The channel of an expert worker being watched (null if none).
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);
  void FetchPlacement(int64_t version);
  void MarkDown(int32_t worker);
  std::vector<bool> WorkersUp(int32_t num_workers) const;

  const engine::ModelConfig config_;
  transport::UcxContext& ucx_;
  const RemoteExpertsOptions options_;
  std::vector<int64_t> moe_layers_;
  std::unique_ptr<transport::UcxExpertClient> client_;
  metrics::Histogram* const dispatch_seconds_;  // dsv3_expert_dispatch_seconds{backend="ucx"}

  mutable absl::Mutex mu_;
  std::shared_ptr<const experts::ExpertPlacement> placement_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const experts::ExpertPlacement> next_placement_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int32_t> joined_ ABSL_GUARDED_BY(mu_);  // address -> worker index
  std::map<int32_t, std::string> address_of_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> wanted_version_{0};
  std::atomic<uint64_t> spread_{0};
  std::thread thread_;
  // Last: its sessions and events use everything above.
  std::unique_ptr<WatchedPeers> peers_;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_REMOTE_EXPERTS_H_
