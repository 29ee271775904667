// The engine's fork-join pool: every index exactly once, nested and concurrent calls inline.

#include "engine/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace dsv3::engine {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 64, 1000, 4097}) {
    for (int64_t align : {1, 16, 128}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelFor(
          n,
          [&](int64_t begin, int64_t end) {
            EXPECT_TRUE(begin % align == 0) << begin;
            for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)]++;
          },
          align);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
    }
  }
}

TEST(ThreadPoolTest, DynamicUsesThreadIndicesBelowSize) {
  ThreadPool pool(2);
  std::vector<std::atomic<int>> hits(500);
  std::atomic<bool> bad_thread{false};
  for (int rep = 0; rep < 50; ++rep) {
    pool.ParallelForDynamic(10, [&](int64_t i, int t) {
      if (t < 0 || t >= pool.size()) bad_thread = true;
      hits[static_cast<size_t>(rep * 10 + i)]++;
    });
  }
  EXPECT_FALSE(bad_thread.load());
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ThreadPoolTest, NestedAndConcurrentCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  auto work = [&] {
    for (int rep = 0; rep < 100; ++rep) {
      pool.ParallelForDynamic(4, [&](int64_t, int) {
        EXPECT_TRUE(ThreadPool::InJob());
        pool.ParallelFor(10, [&](int64_t b, int64_t e) { sum += e - b; });
      });
    }
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(sum.load(), 2 * 100 * 4 * 10);
  EXPECT_FALSE(ThreadPool::InJob());
}

// With no idle spin every worker sleeps between jobs: each Run() must wake it (Run() reads the
// sleeper count without a lock; a missed wake-up would leave every index to the caller).
TEST(ThreadPoolTest, SleepingWorkersWakeForTheNextJob) {
  ThreadPool::SetIdleSpin(std::chrono::microseconds(0));
  ThreadPool pool(2);
  int helped = 0;
  for (int rep = 0; rep < 20; ++rep) {
    // Let the worker fall asleep, then give it 8 indices of 2 ms to share.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::atomic<int> on_worker{0};
    pool.ParallelForDynamic(8, [&](int64_t, int t) {
      if (t != 0) on_worker++;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    });
    if (on_worker.load() > 0) ++helped;
  }
  ThreadPool::SetIdleSpin(std::chrono::microseconds(2000));
  // A worker descheduled for a whole job on a loaded machine may miss one; not most.
  EXPECT_GE(helped, 15);
}

}  // namespace
}  // namespace dsv3::engine
