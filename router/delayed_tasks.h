#ifndef DSV3_ROUTER_DELAYED_TASKS_H_
#define DSV3_ROUTER_DELAYED_TASKS_H_

// Runs callbacks at a later time on one background thread: how an asynchronous request
// waits (for a decode worker with free KV blocks) without holding a thread.

#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dsv3::router {

class DelayedTasks {
 public:
  DelayedTasks();
  // Drops tasks not yet run (their owners see their deadlines pass instead).
  ~DelayedTasks();
  DelayedTasks(const DelayedTasks&) = delete;
  DelayedTasks& operator=(const DelayedTasks&) = delete;

  // Runs `task` at or after `when`, on the background thread (it must not block).
  void RunAt(absl::Time when, std::function<void()> task);
  size_t pending() const;

 private:
  void Loop();
  mutable absl::Mutex mu_;
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_DELAYED_TASKS_H_
