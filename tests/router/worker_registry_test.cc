// The router's view of its workers (router/worker_registry.h) over scripted in-process workers
// (tests/support/fake_worker.h): a worker that falls silent is taken out and its watchers
// told once, and comes back when it answers again; a draining worker is not picked.

#include "router/worker_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "tests/support/fake_worker.h"

namespace dsv3::router {
namespace {

using dsv3::testing::FakeWorker;
using dsv3::testing::FakeWorkerScript;

FakeWorkerScript Role(v1::WorkerRole role) {
  FakeWorkerScript s;
  s.role = role;
  return s;
}

bool IsUp(const WorkerRegistry& registry, const std::string& address) {
  for (const WorkerView& w : registry.Snapshot()) {
    if (w.address == address) return w.up;
  }
  return false;
}

// Polls `done` for up to 10 s.
template <typename Fn>
bool Eventually(Fn done) {
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

TEST(WorkerRegistryTest, ASilentWorkerIsTakenOutItsWatchersToldOnceAndItComesBack) {
  auto prefill = FakeWorker::Start(Role(v1::WORKER_ROLE_PREFILL));
  auto decode = FakeWorker::Start(Role(v1::WORKER_ROLE_DECODE));
  ASSERT_TRUE(prefill && decode);
  WorkerRegistryOptions options;
  options.prefill_addresses = {prefill->address()};
  options.decode_addresses = {decode->address()};
  options.report_interval_ms = 50;
  options.down_after = absl::Milliseconds(1000);
  auto registry = WorkerRegistry::Start(options);
  ASSERT_TRUE(registry->WaitUntilReady(absl::Seconds(10)));
  std::atomic<int> stalls{0};
  std::atomic<int> other_stalls{0};
  const uint64_t watch = registry->WatchStall(decode->address(), [&] { ++stalls; });
  const uint64_t other = registry->WatchStall(prefill->address(), [&] { ++other_stalls; });

  decode->Pause(true);  // connected, silent
  ASSERT_TRUE(Eventually([&] { return stalls.load() == 1; }));
  EXPECT_FALSE(IsUp(*registry, decode->address()));
  EXPECT_FALSE(registry->Pick(WorkerKind::kDecode, {}).ok());
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(stalls.load(), 1) << "a watcher is told once";
  EXPECT_EQ(other_stalls.load(), 0) << "only the silent worker's watchers";

  decode->Pause(false);
  ASSERT_TRUE(Eventually([&] { return IsUp(*registry, decode->address()); }));
  auto picked = registry->Pick(WorkerKind::kDecode, {});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(picked->address, decode->address());
  registry->UnwatchStall(watch);
  registry->UnwatchStall(other);
}

TEST(WorkerRegistryTest, ADrainingWorkerIsNotPicked) {
  auto prefill = FakeWorker::Start(Role(v1::WORKER_ROLE_PREFILL));
  auto draining = FakeWorker::Start(Role(v1::WORKER_ROLE_DECODE));
  auto serving = FakeWorker::Start(Role(v1::WORKER_ROLE_DECODE));
  ASSERT_TRUE(prefill && draining && serving);
  WorkerRegistryOptions options;
  options.prefill_addresses = {prefill->address()};
  options.decode_addresses = {draining->address(), serving->address()};
  options.report_interval_ms = 50;
  options.policy = RoutingPolicy::kRoundRobin;
  auto registry = WorkerRegistry::Start(options);
  ASSERT_TRUE(registry->WaitUntilReady(absl::Seconds(10)));
  ASSERT_TRUE(Eventually(
      [&] { return IsUp(*registry, draining->address()) && IsUp(*registry, serving->address()); }));
  draining->SetDraining(true);
  ASSERT_TRUE(Eventually([&] { return !IsUp(*registry, draining->address()); }));
  for (int i = 0; i < 10; ++i) {
    auto picked = registry->Pick(WorkerKind::kDecode, {});
    ASSERT_TRUE(picked.ok()) << picked.status();
    EXPECT_EQ(picked->address, serving->address());
  }
  // Excluding the one serving worker leaves none.
  EXPECT_EQ(registry->Pick(WorkerKind::kDecode, {serving->address()}).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace dsv3::router
