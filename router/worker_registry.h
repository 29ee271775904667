#ifndef DSV3_ROUTER_WORKER_REGISTRY_H_
#define DSV3_ROUTER_WORKER_REGISTRY_H_

// The prefill and decode workers the router knows, from a static list and from DNS names
// re-resolved periodically (a Kubernetes headless Service). Each worker's load arrives on
// its WatchLoad stream; a worker whose stream breaks or goes quiet for `down_after` is taken
// out, and put back as soon as it answers again.

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsv3/v1/worker.grpc.pb.h"

namespace dsv3::router {

enum class WorkerKind { kPrefill, kDecode };
const char* WorkerKindName(WorkerKind kind);

struct WorkerRegistryOptions {
  std::vector<std::string> prefill_addresses;  // host:port
  std::vector<std::string> decode_addresses;
  std::string prefill_dns;  // "name:port", resolved to every address it has
  std::string decode_dns;
  absl::Duration dns_interval = absl::Seconds(5);
  // No load report for this long: the worker is down.
  absl::Duration down_after = absl::Milliseconds(1200);
  int report_interval_ms = 200;
};

// What the router knows of one worker at one moment.
struct WorkerView {
  std::string address;
  WorkerKind kind = WorkerKind::kPrefill;
  bool up = false;
  v1::LoadReport load;
  v1::WorkerInfo info;
  std::shared_ptr<v1::Worker::Stub> stub;
  // Work sent since the last load report (so a burst spreads before reports catch up).
  int64_t assigned_since_report = 0;
};

class WorkerRegistry {
 public:
  static std::unique_ptr<WorkerRegistry> Start(WorkerRegistryOptions options);
  ~WorkerRegistry();
  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // The best up worker of `kind` not in `exclude`: decode by free KV blocks then running
  // batch, prefill by queued prompt tokens. UNAVAILABLE when none is up.
  absl::StatusOr<WorkerView> Pick(WorkerKind kind, const std::set<std::string>& exclude);
  // Counts work sent to `address` until its next load report.
  void NoteAssigned(const std::string& address, int64_t amount);
  std::vector<WorkerView> Snapshot() const;
  // Identity of the model the up workers serve (from GetInfo), if any is up.
  std::optional<v1::WorkerInfo> ModelInfo() const;
  // Blocks until at least one prefill and one decode worker are up, or the timeout.
  bool WaitUntilReady(absl::Duration timeout) const;

 private:
  struct Worker;
  explicit WorkerRegistry(WorkerRegistryOptions options);
  void AddWorker(const std::string& address, WorkerKind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // dsv3_worker_up{role,address} follows the worker's state.
  static void SetUpGauge(const Worker& w);
  void Monitor(Worker* worker);
  void Housekeeping();
  void ResolveDns();

  const WorkerRegistryOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread housekeeping_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_WORKER_REGISTRY_H_
