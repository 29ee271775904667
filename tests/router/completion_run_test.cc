// The router's request path (router/completion_run.h) against scripted workers served in this
// process over real gRPC (tests/support/fake_worker.h): what it asks of the prefill and decode
// workers, in which order, and what it frees, without worker processes or a model.

#include "router/completion_run.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "router/delayed_tasks.h"
#include "router/live_count.h"
#include "router/worker_notices.h"
#include "router/worker_registry.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_worker.h"

namespace dsv3::router {
namespace {

using dsv3::testing::FakeWorker;
using dsv3::testing::FakeWorkerCalls;
using dsv3::testing::FakeWorkerScript;

FakeWorkerScript PrefillScript() {
  FakeWorkerScript s;
  s.role = v1::WORKER_ROLE_PREFILL;
  return s;
}

// One request's run over a registry of the given workers, with what it streamed.
class RunUnderTest {
 public:
  RunUnderTest(const std::vector<const FakeWorker*>& prefill,
               const std::vector<const FakeWorker*>& decode, int max_tokens,
               int migration_limit = 0) {
    WorkerRegistryOptions options;
    for (const FakeWorker* w : prefill) options.prefill_addresses.push_back(w->address());
    for (const FakeWorker* w : decode) options.decode_addresses.push_back(w->address());
    options.report_interval_ms = 50;
    registry_ = WorkerRegistry::Start(options);
    auto plan = std::make_shared<CompletionPlan>();
    plan->request_id = "req-1";
    plan->prompt = {1, 2, 3, 4, 5};
    plan->sampling.set_max_tokens(max_tokens);
    plan->return_text = false;
    plan->config_hash = "fake-config";
    plan->arrival = absl::Now();
    plan->deadline = plan->arrival + absl::Seconds(20);
    plan->model_name = "fake";
    plan->migration_limit = migration_limit;
    run_ = std::make_shared<CompletionRun>(
        plan, 0, *registry_, delayed_, live_,
        [this](const v1::GenerateResponse& r) {
          absl::MutexLock lock(&mu_);
          tokens_.insert(tokens_.end(), r.token_ids().begin(), r.token_ids().end());
        },
        [this](const absl::Status& s) {
          absl::MutexLock lock(&mu_);
          EXPECT_FALSE(done_.HasBeenNotified()) << "reported twice: " << s;
          status_ = s;
          done_.Notify();
        });
  }
  ~RunUnderTest() {
    run_.reset();
    EXPECT_TRUE(live_->WaitForNone(absl::Seconds(10))) << "the run was never freed";
    // Its one-way notices (Release, UpdatePrefill) use the registry's stubs: their answers
    // come before the registry goes, as in a router that exits.
    EXPECT_TRUE(WaitForWorkerNotices(absl::Seconds(10)));
  }
  // Starts the run once every worker is up (the registry is ready with one of each).
  bool Start() {
    const bool all_up = dsv3::testing::Eventually([this] {
      for (const WorkerView& w : registry_->Snapshot()) {
        if (!w.up) return false;
      }
      return true;
    });
    if (!all_up) return false;
    run_->Start();
    return true;
  }
  CompletionRun& run() { return *run_; }
  // The request's end: its status and every token it streamed.
  absl::Status Wait(std::vector<int32_t>* tokens) {
    EXPECT_TRUE(done_.WaitForNotificationWithTimeout(absl::Seconds(15))) << "never ended";
    absl::MutexLock lock(&mu_);
    if (tokens != nullptr) *tokens = tokens_;
    return status_;
  }
  bool Ended() { return done_.HasBeenNotified(); }

 private:
  std::unique_ptr<WorkerRegistry> registry_;
  DelayedTasks delayed_;
  std::shared_ptr<LiveCount> live_ = std::make_shared<LiveCount>();
  std::shared_ptr<CompletionRun> run_;
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

TEST(CompletionRunTest, ThePromptComputesWhileTheLeaseIsReservedThenTheDecodeTakesIt) {
  auto prefill = FakeWorker::Start(PrefillScript());
  auto decode = FakeWorker::Start(FakeWorkerScript());
  ASSERT_TRUE(prefill && decode);
  prefill->HoldPrefills(true);  // answers only once the test has looked
  RunUnderTest request({prefill.get()}, {decode.get()}, /*max_tokens=*/3);
  ASSERT_TRUE(request.Start());
  // The Prefill went out without a destination; the granted lease followed it.
  ASSERT_TRUE(
      prefill->WaitFor([](const FakeWorkerCalls& c) { return c.destination_updates == 1; }));
  EXPECT_EQ(prefill->calls().prefills_with_destination, 0);
  EXPECT_EQ(decode->calls().leases.size(), 1u);
  prefill->HoldPrefills(false);
  std::vector<int32_t> tokens;
  const absl::Status status = request.Wait(&tokens);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(tokens, (std::vector<int32_t>{11, 12, 13}));
  const FakeWorkerCalls d = decode->calls();
  ASSERT_EQ(d.decodes.size(), 1u);
  EXPECT_EQ(d.decodes[0], d.leases[0]);
  EXPECT_TRUE(d.released.empty()) << "the Decode's end frees the lease, not a Release";
}

TEST(CompletionRunTest, ACancelledPromptsLeaseIsReleasedOnlyAfterItsPrefillStopsWriting) {
  auto prefill = FakeWorker::Start(PrefillScript());
  auto decode = FakeWorker::Start(FakeWorkerScript());
  ASSERT_TRUE(prefill && decode);
  prefill->HoldPrefills(true);  // a prompt that computes and writes into the lease
  RunUnderTest request({prefill.get()}, {decode.get()}, /*max_tokens=*/3);
  ASSERT_TRUE(request.Start());
  ASSERT_TRUE(
      prefill->WaitFor([](const FakeWorkerCalls& c) { return c.destination_updates == 1; }));
  request.run().Cancel();
  ASSERT_TRUE(prefill->WaitFor([](const FakeWorkerCalls& c) { return c.cancels.size() == 1; }));
  // The worker has not answered: it may still write, so the lease stays and the request waits.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(decode->calls().released.empty());
  EXPECT_FALSE(request.Ended());
  prefill->HoldPrefills(false);  // it answers CANCELLED: nothing writes any more
  EXPECT_EQ(request.Wait(nullptr).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(decode->WaitFor([](const FakeWorkerCalls& c) { return c.released.size() == 1; }));
  const FakeWorkerCalls d = decode->calls();
  EXPECT_EQ(d.released.begin()->first, d.leases[0]);
  EXPECT_EQ(d.released.begin()->second, "client cancelled");
  EXPECT_TRUE(d.decodes.empty());
}

TEST(CompletionRunTest, AFullDecodeWorkerIsAskedAgainUntilItHasRoom) {
  auto prefill = FakeWorker::Start(PrefillScript());
  FakeWorkerScript full;
  full.reserve_failures = 3;  // RESOURCE_EXHAUSTED three times
  auto decode = FakeWorker::Start(full);
  ASSERT_TRUE(prefill && decode);
  RunUnderTest request({prefill.get()}, {decode.get()}, /*max_tokens=*/3);
  ASSERT_TRUE(request.Start());
  std::vector<int32_t> tokens;
  const absl::Status status = request.Wait(&tokens);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(tokens, (std::vector<int32_t>{11, 12, 13}));
  EXPECT_EQ(decode->calls().reserves, 4);
  EXPECT_EQ(prefill->calls().prefills, 1) << "the prompt computed once, while it waited";
}

TEST(CompletionRunTest, AFailedKvTransferMovesTheRequestToAnotherDecodeWorker) {
  FakeWorkerScript aborts = PrefillScript();
  aborts.prefill_failures = 1;  // ABORTED: the transfer into the first lease failed
  auto prefill = FakeWorker::Start(aborts);
  auto decode_a = FakeWorker::Start(FakeWorkerScript());
  auto decode_b = FakeWorker::Start(FakeWorkerScript());
  ASSERT_TRUE(prefill && decode_a && decode_b);
  RunUnderTest request({prefill.get()}, {decode_a.get(), decode_b.get()}, /*max_tokens=*/3,
                       /*migration_limit=*/1);
  ASSERT_TRUE(request.Start());
  std::vector<int32_t> tokens;
  const absl::Status status = request.Wait(&tokens);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(tokens, (std::vector<int32_t>{11, 12, 13}));
  // One worker's lease went back unused; the other's was decoded from.
  const FakeWorkerCalls a = decode_a->calls();
  const FakeWorkerCalls b = decode_b->calls();
  ASSERT_EQ(a.leases.size() + b.leases.size(), 2u);
  const FakeWorkerCalls& failed = a.decodes.empty() ? a : b;
  const FakeWorkerCalls& took = a.decodes.empty() ? b : a;
  ASSERT_EQ(failed.released.size(), 1u);
  EXPECT_EQ(failed.released.begin()->second, "the request migrated to another decode worker");
  ASSERT_EQ(took.decodes.size(), 1u);
  EXPECT_TRUE(took.released.empty());
  EXPECT_EQ(prefill->calls().prefills, 2);
}

TEST(CompletionRunTest, ARequestDoneAtItsFirstTokenGivesItsLeaseBack) {
  auto prefill = FakeWorker::Start(PrefillScript());
  auto decode = FakeWorker::Start(FakeWorkerScript());
  ASSERT_TRUE(prefill && decode);
  RunUnderTest request({prefill.get()}, {decode.get()}, /*max_tokens=*/1);
  ASSERT_TRUE(request.Start());
  std::vector<int32_t> tokens;
  const absl::Status status = request.Wait(&tokens);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(tokens, (std::vector<int32_t>{11}));
  ASSERT_TRUE(decode->WaitFor([](const FakeWorkerCalls& c) { return c.released.size() == 1; }));
  EXPECT_EQ(decode->calls().released.begin()->second, "finished at the first token");
  EXPECT_TRUE(decode->calls().decodes.empty());
}

TEST(CompletionRunTest, ADecodeWorkerThatStopsAnsweringMidStreamHandsTheRequestOver) {
  auto prefill = FakeWorker::Start(PrefillScript());
  auto decode_a = FakeWorker::Start(FakeWorkerScript());
  auto decode_b = FakeWorker::Start(FakeWorkerScript());
  ASSERT_TRUE(prefill && decode_a && decode_b);
  prefill->HoldPrefills(true);
  RunUnderTest request({prefill.get()}, {decode_a.get(), decode_b.get()}, /*max_tokens=*/3,
                       /*migration_limit=*/1);
  ASSERT_TRUE(request.Start());
  ASSERT_TRUE(
      prefill->WaitFor([](const FakeWorkerCalls& c) { return c.destination_updates == 1; }));
  // The worker that granted the lease stops (its connections stay open) before its Decode.
  FakeWorker* stopped = decode_a->calls().leases.empty() ? decode_b.get() : decode_a.get();
  FakeWorker* other = stopped == decode_a.get() ? decode_b.get() : decode_a.get();
  stopped->Pause(true);
  prefill->HoldPrefills(false);
  std::vector<int32_t> tokens;
  const absl::Status status = request.Wait(&tokens);
  ASSERT_TRUE(status.ok()) << status;
  // The first attempt's first token, then the second attempt's (prompt + that token; the
  // scripted prefill answers 11 again) and the one Decode token left of max_tokens.
  EXPECT_EQ(tokens, (std::vector<int32_t>{11, 11, 12}));
  EXPECT_EQ(stopped->calls().decodes.size(), 1u);
  EXPECT_EQ(other->calls().decodes.size(), 1u);
  EXPECT_EQ(prefill->calls().prefills, 2);
  stopped->Pause(false);
}

}  // namespace
}  // namespace dsv3::router
