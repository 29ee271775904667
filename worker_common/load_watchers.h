#ifndef DSV3_WORKER_COMMON_LOAD_WATCHERS_H_
#define DSV3_WORKER_COMMON_LOAD_WATCHERS_H_

// Serves WorkerStatus.WatchLoad: every caller gets a LoadReport now and then one per interval
// until it cancels. One thread ticks for all watchers; a watcher whose previous report is
// still being written skips a tick (reports are snapshots; the newest one matters). With a
// KvEventLog, each report also carries the prefix-cache events that stream has not seen.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "dsv3/v1/worker.pb.h"
#include "worker_common/kv_event_log.h"

namespace dsv3::worker {

class LoadWatchers {
 public:
  // `kv_events` (may be null) must outlive this.
  explicit LoadWatchers(std::function<v1::LoadReport()> snapshot,
                        const KvEventLog* kv_events = nullptr);
  // Ends every watch (their streams finish OK) and stops the thread.
  ~LoadWatchers();

  // The WatchLoad handler body.
  grpc::ServerWriteReactor<v1::LoadReport>* Watch(grpc::CallbackServerContext* context,
                                                  const v1::WatchLoadRequest* request);
  // Tells watchers to send no more (drain): they finish their streams.
  void Shutdown();

 private:
  class Reactor;
  void Tick();
  void Remove(Reactor* reactor);

  std::function<v1::LoadReport()> snapshot_;
  const KvEventLog* const kv_events_;
  absl::Mutex mu_;
  std::set<Reactor*> reactors_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_LOAD_WATCHERS_H_
