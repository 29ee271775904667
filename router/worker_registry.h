#ifndef DSV3_ROUTER_WORKER_REGISTRY_H_
#define DSV3_ROUTER_WORKER_REGISTRY_H_

// The prefill and decode workers the router knows, from a static list and from DNS names
// re-resolved periodically (a Kubernetes headless Service), each kind watched by the control
// plane's WatchedPeers (common/watched_peers.h). A session with a worker asks its identity
// (GetInfo) and then reads its WatchLoad stream; a worker whose stream breaks or goes quiet
// for `down_after` is taken out, and put back as soon as it answers again. The same stream
// brings the worker's prefix-cache events, kept in a KvIndex for KV-aware routing.
//
// How a worker is chosen (--router_policy):
//   kv (default)  the least cost, where a prompt's overlap with a worker's cache (its leading
//                 blocks the worker holds) lowers the cost by what need not be done again:
//                   prefill: load_weight * (queued prompt tokens + tokens sent since the
//                            last report) + prompt tokens - overlap_weight * cached tokens
//                            (roughly: tokens to compute before this prompt's first token)
//                   decode:  -(free blocks - blocks assigned since the last report
//                             + overlap_weight * cached blocks)
//                            + 0.001 * (running + waiting sequences)
//                            (free blocks include evictable cached ones; a cached block is
//                             one this request need not take)
//   load          the same without the overlap terms
//   round_robin   the next up worker in address order

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/watched_peers.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "router/kv_index.h"

namespace dsv3::router {

enum class WorkerKind { kPrefill, kDecode };
const char* WorkerKindName(WorkerKind kind);

enum class RoutingPolicy { kKv, kLoad, kRoundRobin };
// "kv", "load", "round_robin".
absl::StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view name);
const char* RoutingPolicyName(RoutingPolicy policy);

struct WorkerRegistryOptions {
  std::vector<std::string> prefill_addresses;  // host:port
  std::vector<std::string> decode_addresses;
  std::string prefill_dns;  // "name:port", resolved to every address it has
  std::string decode_dns;
  absl::Duration dns_interval = absl::Seconds(5);
  // Resolves a "name:port" to host:port addresses; unset: DNS (common/resolve_addresses.h).
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)> resolve;
  // No load report for this long: the worker is down.
  absl::Duration down_after = absl::Milliseconds(1200);
  int report_interval_ms = 200;
  RoutingPolicy policy = RoutingPolicy::kKv;
  // Weights of the kv policy's cost (see above).
  double kv_overlap_weight = 3.0;
  double load_weight = 1.0;
};

// What a choice may weigh: the prompt's block names (common/kv_block_hash.h).
struct PickHint {
  std::span<const uint64_t> kv_names;
  int64_t prompt_tokens = 0;
};

// What the router knows of one worker at one moment.
struct WorkerView {
  std::string address;
  WorkerKind kind = WorkerKind::kPrefill;
  bool up = false;
  v1::LoadReport load;
  v1::WorkerInfo info;
  // Its own calls: a prefill worker's, or a decode worker's (the other is null).
  std::shared_ptr<v1::PrefillWorker::Stub> prefill_stub;
  std::shared_ptr<v1::DecodeWorker::Stub> decode_stub;
  // Work sent since the last load report (so a burst spreads before reports catch up).
  int64_t assigned_since_report = 0;
  // From Pick: the prompt's leading blocks this worker's prefix cache holds.
  int64_t cached_blocks = 0;
};

class WorkerRegistry {
 public:
  static std::unique_ptr<WorkerRegistry> Start(WorkerRegistryOptions options);
  ~WorkerRegistry();
  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // The best up worker of `kind` not in `exclude` by the routing policy (see above).
  // UNAVAILABLE when none is up.
  absl::StatusOr<WorkerView> Pick(WorkerKind kind, const std::set<std::string>& exclude,
                                  const PickHint& hint = {});
  // The most leading `names` any up worker of `kind` holds (nothing recorded).
  int64_t BestOverlap(WorkerKind kind, std::span<const uint64_t> names) const;
  // Counts work sent to `address` until its next load report.
  void NoteAssigned(const std::string& address, int64_t amount);
  // Work noted with NoteAssigned that is done before the next report (never below zero).
  void NoteDone(const std::string& address, int64_t amount);
  std::vector<WorkerView> Snapshot() const;
  // Identity of the model the up workers serve (from GetInfo), if any is up.
  std::optional<v1::WorkerInfo> ModelInfo() const;
  // At least one prefill and one decode worker are up: a request can be served.
  bool Ready() const;
  // Blocks until Ready(), or the timeout.
  bool WaitUntilReady(absl::Duration timeout) const;
  // Calls `on_stall` once (on a control-plane thread, no lock held) if the worker at
  // `address` stops answering: it is up and its load stream goes quiet for `down_after` (a
  // stopped or wedged process; one that dies breaks its streams instead). Returns a token
  // for UnwatchStall, which the caller must call when it no longer needs the call.
  uint64_t WatchStall(const std::string& address, std::function<void()> on_stall);
  void UnwatchStall(uint64_t token);

 private:
  struct Worker;
  explicit WorkerRegistry(WorkerRegistryOptions options);
  std::unique_ptr<WatchedPeers> WatchKind(WorkerKind kind);
  bool ReadyLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // One session with a worker: its identity, then its load stream until it ends.
  absl::Status Session(WorkerKind kind, PeerSession& peer);
  void OnPeerEvent(WorkerKind kind, const PeerEvent& event);
  // dsv3_worker_up{role,address} follows the worker's state.
  static void SetUpGauge(const Worker& w);

  const WorkerRegistryOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  KvIndex kv_index_ ABSL_GUARDED_BY(mu_);
  // round_robin: the address chosen last, per kind.
  std::string last_pick_[2] ABSL_GUARDED_BY(mu_);
  struct StallWatch {
    std::string address;
    std::function<void()> on_stall;
  };
  std::map<uint64_t, StallWatch> stall_watches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_stall_watch_ ABSL_GUARDED_BY(mu_) = 1;
  // Last: their sessions and events use everything above.
  std::unique_ptr<WatchedPeers> prefill_peers_;
  std::unique_ptr<WatchedPeers> decode_peers_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_WORKER_REGISTRY_H_
