#include "engine/thread_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dsv3::engine {
namespace {

// How long an idle worker spins before sleeping (SetIdleSpin): by default longer than the gap
// between the parallel regions of one forward step, short enough not to burn a core between
// requests.
std::atomic<int64_t> g_idle_spin_us{2000};
std::atomic<int> g_compute_nice{0};

thread_local bool t_in_job = false;

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

std::mutex g_default_mu;
int g_default_threads = 0;                        // guarded by g_default_mu; 0 = hardware threads
std::unique_ptr<ThreadPool> g_default;            // guarded by g_default_mu
std::atomic<ThreadPool*> g_default_ptr{nullptr};  // acquire/release: published after creation

int HardwareThreads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Marks the current thread as inside a job for the scope.
class InJobScope {
 public:
  InJobScope() : saved_(t_in_job) { t_in_job = true; }
  ~InJobScope() { t_in_job = saved_; }

 private:
  bool saved_;
};

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back(&ThreadPool::WorkerLoop, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    stop_.store(true, std::memory_order_relaxed);
    state_.store(~uint64_t{0} & ~kJoinedMask, std::memory_order_release);  // wakes every worker
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

ThreadPool& ThreadPool::Default() {
  ThreadPool* p = g_default_ptr.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (g_default == nullptr) {
    g_default =
        std::make_unique<ThreadPool>(g_default_threads > 0 ? g_default_threads : HardwareThreads());
    g_default_ptr.store(g_default.get(), std::memory_order_release);
  }
  return *g_default;
}

int ThreadPool::DefaultThreads() {
  std::lock_guard<std::mutex> lock(g_default_mu);
  return g_default_threads > 0 ? g_default_threads : HardwareThreads();
}

void ThreadPool::SetDefaultThreads(int n) {
  std::lock_guard<std::mutex> lock(g_default_mu);
  const int threads = n > 0 ? n : HardwareThreads();
  g_default_threads = n > 0 ? n : 0;
  if (g_default != nullptr && g_default->size() == threads) return;
  g_default_ptr.store(nullptr, std::memory_order_release);
  g_default = std::make_unique<ThreadPool>(threads);
  g_default_ptr.store(g_default.get(), std::memory_order_release);
}

bool ThreadPool::InJob() { return t_in_job; }

void ThreadPool::Run(const std::function<void(int)>& job) {
  if (workers_.empty() || t_in_job || !run_mu_.try_lock()) {
    InJobScope scope;
    job(0);
    return;
  }
  job_ = &job;
  // 32-bit generations; 0 (a worker's initial `seen`) and 0xFFFFFFFF (shutdown) are skipped.
  generation_ = generation_ + 1 >= 0xFFFFFFFFu ? 1 : generation_ + 1;
  state_.store(generation_ << 32, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    wake_.notify_all();
  }
  {
    InJobScope scope;
    job(0);
  }
  // No late joiners from here on; wait for the workers inside to finish their chunks.
  uint64_t s = state_.fetch_or(kClosed, std::memory_order_acq_rel);
  for (int spins = 0; (s & kJoinedMask) != 0; ++spins) {
    if (spins < 4096) {
      CpuRelax();
    } else {
      std::this_thread::yield();  // a worker inside the job was descheduled
    }
    s = state_.load(std::memory_order_acquire);
  }
  job_ = nullptr;
  run_mu_.unlock();
}

void ThreadPool::SetIdleSpin(std::chrono::microseconds spin) {
  g_idle_spin_us.store(std::max<int64_t>(0, spin.count()), std::memory_order_relaxed);
}

void ThreadPool::SetComputeNice(int nice) {
  g_compute_nice.store(std::clamp(nice, 0, 19), std::memory_order_relaxed);
}

void ThreadPool::MarkComputeThread() {
  const int nice = g_compute_nice.load(std::memory_order_relaxed);
  // Linux: a thread's niceness is per thread (setpriority on its tid).
  if (nice > 0) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice);
}

void ThreadPool::WorkerLoop(int index) {
  MarkComputeThread();
  t_in_job = true;    // a worker only ever runs jobs: its nested parallel calls go inline
  uint64_t seen = 0;  // generation 0 is never a job
  for (;;) {
    uint64_t s = state_.load(std::memory_order_acquire);
    const auto spin_start = std::chrono::steady_clock::now();
    const auto spin_limit =
        std::chrono::microseconds(g_idle_spin_us.load(std::memory_order_relaxed));
    for (int spins = 0; (s >> 32) == seen; ++spins) {
      CpuRelax();
      if ((spins & 255) == 255 && std::chrono::steady_clock::now() - spin_start > spin_limit) {
        std::unique_lock<std::mutex> lock(sleep_mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return (state_.load(std::memory_order_seq_cst) >> 32) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      s = state_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = s >> 32;
    while ((s & kClosed) == 0) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire,
                                       std::memory_order_acquire)) {
        (*job_)(index);
        state_.fetch_sub(1, std::memory_order_release);
        break;
      }
      if ((s >> 32) != seen) break;  // a newer job: handle it on the next turn
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t align) {
  if (n <= 0) return;
  align = std::max<int64_t>(1, align);
  if (n <= align || workers_.empty() || t_in_job) {
    InJobScope scope;
    fn(0, n);
    return;
  }
  int64_t chunk = (n + 4 * size() - 1) / (4 * size());
  chunk = (chunk + align - 1) / align * align;
  const int64_t chunks = (n + chunk - 1) / chunk;
  // relaxed: only hands out chunk indices. A line of its own: the threads' claims move it
  // between cores, and the other locals the job reads (n, chunk, fn) would move with it.
  alignas(64) std::atomic<int64_t> next{0};
  Run([&](int) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(c * chunk, std::min(n, (c + 1) * chunk));
    }
  });
}

void ThreadPool::ParallelForDynamic(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  alignas(64) std::atomic<int64_t> next{0};  // relaxed: only hands out indices (as above)
  Run([&](int t) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(i, t);
    }
  });
}

}  // namespace dsv3::engine
