#ifndef DSV3_ENGINE_THREAD_POOL_H_
#define DSV3_ENGINE_THREAD_POOL_H_

// A small persistent fork-join pool for the engine's kernels. Work is handed out in chunks
// through an atomic counter and the calling thread takes chunks too: a worker that is late
// (descheduled on a busy machine) simply finds the work done instead of holding the caller up.
// Idle workers spin briefly between jobs (a decode token is ~100 short parallel regions, too
// short for a condition-variable wake-up each), then sleep. A parallel call from inside a job,
// or while another caller holds the pool, runs inline on the calling thread: nested
// parallelism and concurrent Forward calls are safe and never oversubscribe.
//
//   ThreadPool::Default().ParallelFor(rows, [&](int64_t begin, int64_t end) { ... });

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace dsv3::engine {

class ThreadPool {
 public:
  // `num_threads` counts the caller: 1 means no worker threads.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The process-wide pool the kernels use, created on first use with DefaultThreads() threads.
  static ThreadPool& Default();
  // Hardware threads unless SetDefaultThreads() said otherwise.
  static int DefaultThreads();
  // Resizes the default pool (n <= 0: hardware threads). Call while no Forward runs.
  static void SetDefaultThreads(int n);

  // How long an idle worker spins for the next job before it sleeps (every pool; default
  // 2 ms, longer than the gaps inside a forward step). Processes that share cores with
  // others they wait on (attention and expert workers on one machine) set it short.
  static void SetIdleSpin(std::chrono::microseconds spin);
  // Niceness (0..19) of the threads that run forward steps: every pool worker, and the
  // threads that call MarkComputeThread (a scheduler's loop). Above 0, the processes'
  // control-plane threads (gRPC, UCX progress, the router) preempt compute on shared cores
  // instead of queueing behind it. Set before the pools start.
  static void SetComputeNice(int nice);
  // Applies the compute niceness to the calling thread.
  static void MarkComputeThread();

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over [0, n) in contiguous chunks of about n / (4 size()) (multiples of
  // `align` except the last), each chunk on whichever thread claims it first.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                   int64_t align = 1);
  // fn(i, thread) for every i < n, one index at a time (uneven work, e.g. experts). `thread` <
  // size() identifies the executing thread (for per-thread scratch).
  void ParallelForDynamic(int64_t n, const std::function<void(int64_t i, int thread)>& fn);

  // True on a thread that is executing a job of some pool.
  static bool InJob();

 private:
  // Runs job(thread) on the caller (thread 0) and on every worker that joins before the caller
  // is done with it; the job must claim its work dynamically.
  void Run(const std::function<void(int thread)>& job);
  void WorkerLoop(int index);

  static constexpr uint64_t kJoinedMask = 0x7FFFFFFFu;
  static constexpr uint64_t kClosed = 0x80000000u;

  // The caller's (run_mu_, generation_), what the workers spin on (state_, job_) and the
  // sleepers' (sleep_mu_, wake_, sleepers_) each on a cache line of their own: a line moves
  // between cores in about 250 ns on a 2-core VM (a round trip measured 440-520 ns), and a
  // Run() that wrote the workers' line again after publishing the job paid that once more.
  alignas(64) std::mutex run_mu_;  // one Run() at a time; try_lock'ed, a busy pool runs jobs inline
  uint64_t generation_ = 0;        // guarded by run_mu_
  // (generation << 32) | kClosed | workers inside the job. Run() stores a new generation
  // (release: publishes job_); a worker joins with a CAS that increments the count while the
  // job is open (acquire: sees job_) and leaves with a decrement (release: its writes are
  // visible to Run(), which closes the job and then waits, acquiring, for the count to drop).
  alignas(64) std::atomic<uint64_t> state_{0};
  const std::function<void(int)>* job_ = nullptr;  // written by Run() before publishing state_
  std::atomic<bool> stop_{false};
  alignas(64) std::mutex sleep_mu_;
  std::condition_variable wake_;
  // Changed under sleep_mu_; Run() reads it without the lock (seq_cst, after its seq_cst store
  // of state_): either it sees a sleeper and wakes it, or the sleeper's wait sees the new job.
  std::atomic<int> sleepers_{0};
  std::vector<std::thread> workers_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_THREAD_POOL_H_
