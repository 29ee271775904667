#include "router/delayed_tasks.h"

namespace dsv3::router {

DelayedTasks::DelayedTasks() : thread_([this] { Loop(); }) {}

DelayedTasks::~DelayedTasks() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void DelayedTasks::RunAt(absl::Time when, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.emplace(when, std::move(task));
}

size_t DelayedTasks::pending() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

void DelayedTasks::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto due = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || (!tasks_.empty() && tasks_.begin()->first <= absl::Now());
      };
      // Wake at the next due time (or when a new task may be due sooner: re-check often).
      absl::Duration wait = absl::Milliseconds(20);
      if (!tasks_.empty()) wait = std::min(wait, tasks_.begin()->first - absl::Now());
      mu_.AwaitWithTimeout(absl::Condition(&due), std::max(wait, absl::ZeroDuration()));
      if (stop_) return;
      if (tasks_.empty() || tasks_.begin()->first > absl::Now()) continue;
      task = std::move(tasks_.begin()->second);
      tasks_.erase(tasks_.begin());
    }
    task();
  }
}

}  // namespace dsv3::router
