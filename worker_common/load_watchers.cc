#include "worker_common/load_watchers.h"

#include <algorithm>
#include <optional>

namespace dsv3::worker {

constexpr int kDefaultIntervalMs = 250;
constexpr int kMinIntervalMs = 20;

class LoadWatchers::Reactor : public grpc::ServerWriteReactor<v1::LoadReport> {
 public:
  Reactor(LoadWatchers* owner, int interval_ms)
      : owner_(owner), interval_(absl::Milliseconds(interval_ms)) {}

  // From the tick thread: send a report when due and the previous write is done.
  void MaybeSend(const v1::LoadReport& report, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || now < next_due_) return;
      writing_ = true;
      next_due_ = now + interval_;
      current_ = report;
      if (owner_->kv_events_ != nullptr) {
        owner_->kv_events_->Collect(&kv_cursor_, current_.mutable_kv_cache_events());
      }
    }
    StartWrite(&current_);
  }

  void FinishOnce(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (writing_) {  // finish once the write in flight completes
        pending_finish_ = status;
        return;
      }
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finished_) {  // the caller went away
        finished_ = true;
        pending_finish_ = grpc::Status::CANCELLED;
      }
      if (finished_ && pending_finish_.has_value()) {
        finish = true;
        status = *pending_finish_;
        pending_finish_.reset();
      }
    }
    if (finish) Finish(status);
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    owner_->Remove(this);
    delete this;
  }

 private:
  LoadWatchers* owner_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
  absl::Time next_due_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t kv_cursor_ ABSL_GUARDED_BY(mu_) = 0;  // prefix-cache events sent so far
  v1::LoadReport current_;                       // owned by the write in flight
};

LoadWatchers::LoadWatchers(std::function<v1::LoadReport()> snapshot, const KvEventLog* kv_events)
    : snapshot_(std::move(snapshot)), kv_events_(kv_events) {
  thread_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(kMinIntervalMs))) {
          return;
        }
      }
      Tick();
    }
  });
}

LoadWatchers::~LoadWatchers() {
  Shutdown();
  // Reactors remove themselves in OnDone; wait (bounded) for the streams to close.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      if (reactors_.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

void LoadWatchers::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // Under mu_: a reactor leaves reactors_ (in OnDone, after its Finish completes on a gRPC
  // thread) before it is deleted, so every pointer here is alive.
  absl::MutexLock lock(&mu_);
  for (Reactor* r : reactors_) r->FinishOnce(grpc::Status::OK);
}

grpc::ServerWriteReactor<v1::LoadReport>* LoadWatchers::Watch(grpc::CallbackServerContext*,
                                                              const v1::WatchLoadRequest* request) {
  int interval = request->interval_ms() > 0 ? request->interval_ms() : kDefaultIntervalMs;
  interval = std::max(interval, kMinIntervalMs);
  auto* reactor = new Reactor(this, interval);
  bool stopped;
  {
    absl::MutexLock lock(&mu_);
    stopped = stop_;
    if (!stopped) reactors_.insert(reactor);
  }
  if (stopped) {
    reactor->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is draining"));
  } else {
    reactor->MaybeSend(snapshot_(), absl::Now());
  }
  return reactor;
}

void LoadWatchers::Tick() {
  {
    absl::MutexLock lock(&mu_);
    if (reactors_.empty()) return;
  }
  v1::LoadReport report = snapshot_();
  absl::Time now = absl::Now();
  // Reactors stay alive while in reactors_: OnDone removes them under mu_ before deleting.
  absl::MutexLock lock(&mu_);
  for (Reactor* r : reactors_) r->MaybeSend(report, now);
}

void LoadWatchers::Remove(Reactor* reactor) {
  absl::MutexLock lock(&mu_);
  reactors_.erase(reactor);
}

}  // namespace dsv3::worker
