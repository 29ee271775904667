// The router's view of its workers (router/worker_registry.h) over scripted in-process workers
// (tests/support/fake_worker.h): a worker that falls silent is taken out and its watchers
// told once, and comes back when it answers again; a draining worker is not picked.

#include "router/worker_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_worker.h"

namespace dsv3::router {
namespace {

using dsv3::testing::Eventually;
using dsv3::testing::FakeWorker;
using dsv3::testing::FakeWorkerCalls;
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

// A DNS whose answers the test sets.
class FakeDns {
 public:
  void Set(const std::string& name, std::vector<std::string> addresses) {
    absl::MutexLock lock(&mu_);
    answers_[name] = std::move(addresses);
  }
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return answers_[name];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> answers_ ABSL_GUARDED_BY(mu_);
};

// Polls `done` for up to 10 s.

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

// The router's readiness: a request needs a prefill and a decode worker, so a decode worker
// up alone is not enough (a router whose decode worker came up first once reported ready and
// failed its first requests with "no prefill worker is up").
TEST(WorkerRegistryTest, ReadyOnlyOnceAPrefillAndADecodeWorkerAreUp) {
  auto prefill = FakeWorker::Start(Role(v1::WORKER_ROLE_PREFILL));
  auto decode = FakeWorker::Start(Role(v1::WORKER_ROLE_DECODE));
  ASSERT_TRUE(prefill && decode);
  prefill->SetDraining(true);  // reachable, but not taking work
  WorkerRegistryOptions options;
  options.prefill_addresses = {prefill->address()};
  options.decode_addresses = {decode->address()};
  options.report_interval_ms = 50;
  auto registry = WorkerRegistry::Start(options);
  ASSERT_TRUE(Eventually([&] { return IsUp(*registry, decode->address()); }));
  absl::SleepFor(absl::Milliseconds(200));  // a few of the prefill worker's reports
  EXPECT_FALSE(IsUp(*registry, prefill->address()));
  EXPECT_FALSE(registry->Ready());
  EXPECT_FALSE(registry->WaitUntilReady(absl::Milliseconds(100)));
  prefill->SetDraining(false);
  EXPECT_TRUE(Eventually([&] { return registry->Ready(); }));
}

// A full redeploy behind a headless Service, round after round: every worker leaves DNS at
// once while a call to one is still in flight (its channel goes last, on gRPC's callback
// thread, as the worker shuts down), and new workers at new addresses appear. The router
// drops every channel it had, makes new ones, and serves from the new workers.
TEST(WorkerRegistryTest, EveryWorkerReplacedThroughDnsIsDroppedAndTheNewOnesServe) {
  FakeDns dns;
  WorkerRegistryOptions options;
  options.prefill_dns = "prefill.test:1";
  options.decode_dns = "decode.test:1";
  options.dns_interval = absl::Milliseconds(50);
  options.report_interval_ms = 50;
  options.resolve = [&dns](const std::string& name) { return dns.Resolve(name); };
  auto registry = WorkerRegistry::Start(options);
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE(round);
    auto prefill = FakeWorker::Start(Role(v1::WORKER_ROLE_PREFILL));
    auto decode = FakeWorker::Start(Role(v1::WORKER_ROLE_DECODE));
    ASSERT_TRUE(prefill && decode);
    dns.Set(options.prefill_dns, {prefill->address()});
    dns.Set(options.decode_dns, {decode->address()});
    ASSERT_TRUE(Eventually(
        [&] { return IsUp(*registry, prefill->address()) && IsUp(*registry, decode->address()); }));
    auto picked = registry->Pick(WorkerKind::kPrefill, {});
    ASSERT_TRUE(picked.ok()) << picked.status();
    EXPECT_EQ(picked->address, prefill->address());

    // A Prefill with no destination yet: the worker holds it until it shuts down. Only the
    // call holds the old worker's channel then (its stub and context), and lets it go on
    // gRPC's callback thread.
    struct InFlight {
      grpc::ClientContext context;
      v1::PrefillRequest request;
      v1::PrefillResponse response;
    };
    auto done = std::make_shared<absl::Notification>();
    {
      auto call = std::make_shared<InFlight>();
      call->request.add_prompt_token_ids(1);
      InFlight* raw = call.get();
      picked->prefill_stub->async()->Prefill(
          &raw->context, &raw->request, &raw->response,
          [call = std::move(call), stub = std::move(picked->prefill_stub), done](grpc::Status) {
            done->Notify();
          });
    }
    ASSERT_TRUE(prefill->WaitFor([](const FakeWorkerCalls& c) { return c.prefills == 1; }));

    dns.Set(options.prefill_dns, {});
    dns.Set(options.decode_dns, {});
    ASSERT_TRUE(Eventually([&] { return registry->Snapshot().empty(); }));
    EXPECT_EQ(registry->Pick(WorkerKind::kPrefill, {}).status().code(),
              absl::StatusCode::kUnavailable);
    prefill.reset();  // answers the held call
    ASSERT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(10)));
  }
}

}  // namespace
}  // namespace dsv3::router
