// Real prefill and decode worker processes on 127.0.0.1, driven over gRPC the way the router
// drives them (Reserve on D, Prefill on P with D's KvDestination or the destination
// following in UpdatePrefill, Decode on D). Checks:
// greedy tokens equal the reference implementation's; the KV rows that land in the decode
// worker's blocks equal, byte for byte, the rows the engine computes for the prompt (read
// back with a one-sided UCX get by this test process); blocks come back. Over tcp and over
// shared memory (bad input and lease security: disaggregated_workers_bad_input_test.cc).

#include <httplib.h>
#include <signal.h>

#include <thread>

#include "absl/strings/str_split.h"
#include "tests/integration/disaggregated_workers_fixture.h"
#include "tests/support/ucx_flood.h"

namespace dsv3::disaggregated {
namespace {

using ::testing::HasSubstr;

TEST_P(DisaggregatedWorkersTest, GreedyTokensMatchTheReference) {
  const int free_at_start = FreeBlocks(decode_);
  ASSERT_GT(free_at_start, 0);
  for (const GoldenPrompt& g : LoadGolden()) {
    auto d = Reserve(static_cast<int>(g.prompt.size()), 8);
    ASSERT_TRUE(d.ok()) << d.status();
    auto p = Prefill(g.prompt, *d);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->first_token_id(), g.greedy[0]);
    EXPECT_EQ(p->kv_bytes(), static_cast<int64_t>(g.prompt.size()) * d->layout().row_bytes() *
                                 (d->layout().num_layers()));
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    std::vector<int32_t> tokens = Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason);
    EXPECT_EQ(tokens, g.greedy);
    EXPECT_EQ(reason, v1::FINISH_REASON_LENGTH);
  }
  // Every block comes back once the sequences finish.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode_) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(FreeBlocks(decode_), free_at_start);
}

TEST_P(DisaggregatedWorkersTest, KvRowsLandByteForByte) {
  const GoldenPrompt g = LoadGolden().back();  // the longest prompt: several blocks
  auto d = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto p = Prefill(g.prompt, *d);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectRowsLanded(g.prompt, *d);
  EXPECT_TRUE(Release(d->lease_id()));
}

TEST_P(DisaggregatedWorkersTest, ExpiredLeaseFreesItsBlocks) {
  // A short lease on a second decode worker.
  const std::string dir = MakeTempDir("lease");
  Worker decode = StartWorker("dsv3-decode", dir, GetParam(), {"--lease_timeout=1500ms"});
  ASSERT_TRUE(decode.decode_stub);
  const int free_at_start = FreeBlocks(decode);
  grpc::ClientContext ctx;
  v1::ReserveRequest req;
  req.set_prompt_tokens(40);
  req.set_max_new_tokens(8);
  v1::ReserveResponse resp;
  ASSERT_TRUE(decode.decode_stub->Reserve(&ctx, req, &resp).ok());
  EXPECT_LT(FreeBlocks(decode), free_at_start);
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(FreeBlocks(decode), free_at_start);
  EXPECT_THAT(decode.process->ReadLog(), HasSubstr("lease expired"));
}

// The router's way: a Prefill with a job id and no destination, sent while the decode
// worker reserves; UpdatePrefill brings the destination. Whether it arrives before the
// prompt computes, mid-prompt (two-token steps: 17 steps for 33 tokens) or after it, every
// row lands byte for byte and the tokens are the reference's.
TEST_P(DisaggregatedWorkersTest, DestinationThatFollowsThePromptGetsEveryRow) {
  Worker prefill =
      StartWorker("dsv3-prefill", MakeTempDir("late"), GetParam(), {"--prefill_chunk_tokens=2"});
  ASSERT_TRUE(prefill.prefill_stub);
  const int free_at_start = FreeBlocks(decode_);
  const GoldenPrompt g = LoadGolden().back();
  const int n = static_cast<int>(g.prompt.size());
  uint64_t job_id = 1000;
  for (absl::Duration delay : {absl::ZeroDuration(), absl::Milliseconds(2), absl::Milliseconds(10),
                               absl::Milliseconds(400)}) {
    SCOPED_TRACE(absl::StrCat("destination after ", absl::FormatDuration(delay)));
    ++job_id;
    auto call = PrefillJob(prefill, g.prompt, job_id, std::nullopt);
    absl::SleepFor(delay);
    auto d = Reserve(n, 8);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE(Update(prefill, job_id, &*d).ok());
    auto p = call.get();
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->first_token_id(), g.greedy[0]);
    EXPECT_EQ(p->kv_bytes(),
              static_cast<int64_t>(n) * d->layout().row_bytes() * d->layout().num_layers());
    // 400 ms is long after the prompt computed: the job waited for its destination.
    if (delay == absl::Milliseconds(400)) {
      EXPECT_GT(p->destination_wait_ns(), 0);
    }
    ExpectRowsLanded(g.prompt, *d, 2);
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    EXPECT_EQ(Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason), g.greedy);
  }
  // The update may even overtake its Prefill (separate calls).
  ++job_id;
  auto d = Reserve(n, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(Update(prefill, job_id, &*d).ok());
  auto p = PrefillJob(prefill, g.prompt, job_id, std::nullopt).get();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  ExpectRowsLanded(g.prompt, *d, 2);
  EXPECT_TRUE(Release(d->lease_id()));
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode_) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(FreeBlocks(decode_), free_at_start);
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
}

// A job ends early when cancelled (after its in-flight writes), at its deadline when its
// destination never comes, and with the destination's error when that is unusable; the
// worker lets every such job go and keeps serving.
TEST_P(DisaggregatedWorkersTest, CancelledTimedOutAndRefusedJobsEndAndLeaveTheWorkerFree) {
  Worker prefill =
      StartWorker("dsv3-prefill", MakeTempDir("cancel"), GetParam(), {"--prefill_chunk_tokens=1"});
  ASSERT_TRUE(prefill.prefill_stub);
  // 900 tokens at one per step: 900 steps, cancelled a few steps in (the whole job has taken
  // under 100 ms at two tokens a step on a fast host, and then the cancel came too late).
  std::vector<int32_t> long_prompt(900);
  for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(i % 1000);
  auto d = Reserve(static_cast<int>(long_prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto call = PrefillJob(prefill, long_prompt, 77, *d);
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_TRUE(Update(prefill, 77, nullptr, "the test cancels").ok());
  auto cancelled = call.get();
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();
  EXPECT_THAT(cancelled.status().message(), HasSubstr("the test cancels"));
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  EXPECT_TRUE(Release(d->lease_id()));

  // No destination before the deadline: DEADLINE_EXCEEDED, and the worker drops the job.
  const GoldenPrompt g = LoadGolden().back();
  auto late = PrefillJob(prefill, g.prompt, 78, std::nullopt, absl::Milliseconds(300)).get();
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));

  // Malformed: no job id, empty update.
  auto d2 = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_EQ(PrefillJob(prefill, g.prompt, 0, std::nullopt).get().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Update(prefill, 0, &*d2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Update(prefill, 79, nullptr).code(), absl::StatusCode::kInvalidArgument);
  // A destination of another model: refused, and its job ends with the same error.
  auto refused = PrefillJob(prefill, g.prompt, 80, std::nullopt);
  v1::KvDestination other = *d2;
  other.set_config_hash("0123456789abcdef");
  EXPECT_EQ(Update(prefill, 80, &other).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.get().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));

  // A cancel is not undone by a destination that comes after it (separate calls: here both
  // even overtake their Prefill).
  ASSERT_TRUE(Update(prefill, 82, nullptr, "cancelled first").ok());
  ASSERT_TRUE(Update(prefill, 82, &*d2).ok());
  auto after_cancel = PrefillJob(prefill, g.prompt, 82, std::nullopt).get();
  EXPECT_EQ(after_cancel.status().code(), absl::StatusCode::kCancelled) << after_cancel.status();

  // Still serving, correctly.
  auto ok = PrefillJob(prefill, g.prompt, 81, std::nullopt);
  ASSERT_TRUE(Update(prefill, 81, &*d2).ok());
  auto p = ok.get();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  EXPECT_TRUE(Release(d2->lease_id()));
}

// A decode worker killed while a prompt's KV is on its way: the prefill ends with
// ABORTED (the caller resumes the request on another decode worker) naming it within a few
// seconds (over TCP UCX notices the dead peer; over shared
// memory, which does not, the flush sees the decode worker's gRPC port refuse connections),
// not at its 10 s transfer timeout, and the prefill worker serves the next request. The pool
// is the engine's own memory here: over shared memory its puts complete only when the decode
// worker's progress thread takes them, the case that would wait for a dead target.
// A caller that leaves while its prefill runs (a router that died between Reserve and
// Decode) cannot release the lease it reserved: the prefill worker, which holds it, does once
// its puts have completed, so the blocks come back now rather than at the lease's expiry
// (30 s). Whether the destination came with the Prefill or after it. A cancel by
// UpdatePrefill (the caller is there and releases the lease itself) leaves the lease alone.
TEST_P(DisaggregatedWorkersTest, APrefillWhoseCallerLeftReleasesItsLease) {
  // 900 tokens one per step: long enough to leave while it runs.
  Worker prefill = StartWorker("dsv3-prefill", MakeTempDir("caller-left"), GetParam(),
                               {"--prefill_chunk_tokens=1"});
  ASSERT_TRUE(prefill.prefill_stub);
  std::vector<int32_t> long_prompt(900);
  for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(i % 1000);
  const int all_free = FreeBlocks(decode_);
  for (const bool in_prefill : {true, false}) {
    auto d = Reserve(static_cast<int>(long_prompt.size()), 4);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_LT(FreeBlocks(decode_), all_free);
    const uint64_t job = in_prefill ? 0 : 93;
    grpc::ClientContext ctx;
    SetDeadline(ctx, 30);
    v1::PrefillRequest req;
    for (int32_t t : long_prompt) req.add_prompt_token_ids(t);
    req.set_job_id(job);
    if (in_prefill) *req.mutable_destination() = *d;
    v1::PrefillResponse resp;
    grpc::Status status;
    std::thread caller([&] { status = prefill.prefill_stub->Prefill(&ctx, req, &resp); });
    // The caller leaves once its prompt is being computed (and, here, has its destination).
    const absl::Time running_by = absl::Now() + absl::Seconds(10);
    while (Load(prefill).queued_prefill_tokens() == 0 && absl::Now() < running_by) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (!in_prefill) {
      ASSERT_TRUE(Update(prefill, job, &*d).ok());
    }
    ctx.TryCancel();
    caller.join();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (FreeBlocks(decode_) < all_free && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(FreeBlocks(decode_), all_free) << "in_prefill=" << in_prefill;
    EXPECT_FALSE(Release(d->lease_id())) << "the lease was still there";
    EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  }
  // Cancelled by its caller, who stays: the lease is the caller's to release.
  auto d = Reserve(static_cast<int>(long_prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto call = PrefillJob(prefill, long_prompt, 94, *d);
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(Update(prefill, 94, nullptr, "the caller cancels").ok());
  EXPECT_EQ(call.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE(Release(d->lease_id()));
}

TEST_P(DisaggregatedWorkersTest, DecodeWorkerKilledDuringTheTransferFailsThePrefillPromptly) {
  const std::string dir = MakeTempDir("killdecode");
  Worker decode = StartWorker("dsv3-decode", dir, GetParam(), {"--kv_pool_memory=engine"});
  // One token per step: the prompt takes many steps, so the kill lands mid-transfer.
  Worker prefill = StartWorker("dsv3-prefill", dir, GetParam(), {"--prefill_chunk_tokens=1"});
  ASSERT_TRUE(decode.decode_stub && prefill.prefill_stub);
  std::vector<int32_t> prompt(1000);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7) % 1000);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10);
  v1::ReserveRequest req;
  req.set_prompt_tokens(static_cast<int32_t>(prompt.size()));
  req.set_max_new_tokens(4);
  v1::ReserveResponse reserved;
  ASSERT_TRUE(decode.decode_stub->Reserve(&ctx, req, &reserved).ok());
  auto call = PrefillJob(prefill, prompt, 91, reserved.destination());
  // Kill as soon as the prompt is in the prefill worker: its first rows are on their way.
  const absl::Time wait_until = absl::Now() + absl::Seconds(5);
  while (Load(prefill).queued_prefill_tokens() == 0 && absl::Now() < wait_until) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  decode.process->Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  auto result = call.get();
  const absl::Duration took = absl::Now() - killed;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(decode.address));
  EXPECT_LT(took, absl::Seconds(5)) << "the prefill waited for the dead decode worker";
  // The prefill worker is free and serves the next request (on the fixture's decode worker).
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  const GoldenPrompt g = LoadGolden().back();
  auto d = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  // Over shared memory, a kill that lands while the decode worker writes into the prefill
  // worker's receive ring stops that ring; the prefill worker then moves to a new UCX worker
  // (transport/ucx/ucx_context.h) and this connection is made on it.
  auto p = PrefillJob(prefill, g.prompt, 92, *d).get();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  EXPECT_TRUE(Release(d->lease_id()));
}

// Over shared memory, a process that dies while it writes into the decode worker's UCX
// receive ring (a crashed prefill worker, here a flood killed mid-message) stops the ring
// for every sender. The decode worker moves to a new UCX worker: its next Reserve and its
// GetInfo (which the prefill worker checks destinations against) name the new address, and
// a prefill through the prefill worker's endpoint of before lands and decodes as before.
TEST_P(DisaggregatedWorkersTest, ADecodeWorkerWhoseRingADeadSenderStoppedMovesAndServes) {
  if (GetParam() == "tcp") GTEST_SKIP() << "the shared-memory ring only";
  const GoldenPrompt g = LoadGolden().back();
  auto serve = [&] {
    auto d = Reserve(static_cast<int>(g.prompt.size()), 8);
    ASSERT_TRUE(d.ok()) << d.status();
    auto p = Prefill(g.prompt, *d);
    ASSERT_TRUE(p.ok()) << p.status();
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    EXPECT_EQ(Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason), g.greedy);
  };
  ASSERT_NO_FATAL_FAILURE(serve());  // the prefill worker has an endpoint to the old worker
  auto moved = [&] {
    return decode_.process->ReadLog().find("moved to a new worker") != std::string::npos;
  };
  auto current_address = [&]() -> std::string {
    auto d = Reserve(1, 1);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return "";
    EXPECT_TRUE(Release(d->lease_id()));
    return d->ucx_worker_address();
  };
  const std::string before = current_address();
  // A kill stops the ring only when it lands inside a message: 1-40 kills without
  // sanitizers, more under them; a run without a stop proves nothing and says so.
  int kills = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  for (; kills < 200 && !moved() && absl::Now() < give_up;) {
    auto flooded = testing::FloodThenKill(current_address(), dir_ + "/flood.log");
    ASSERT_TRUE(flooded.ok()) << flooded.status();
    if (*flooded) ++kills;
  }
  // The probe notices within about 2 s of the stop.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!moved() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  if (!moved()) GTEST_SKIP() << "no kill of " << kills << " stopped the ring";
  EXPECT_NE(current_address(), before);
  ASSERT_NO_FATAL_FAILURE(serve());
  // Operators see it: the worker's counter, as Prometheus scrapes it.
  const std::vector<std::string> hp = absl::StrSplit(decode_.metrics, ':');
  ASSERT_EQ(hp.size(), 2u) << decode_.metrics;
  httplib::Client http(hp[0], std::stoi(hp[1]));
  auto scraped = http.Get("/metrics");
  ASSERT_TRUE(scraped) << httplib::to_string(scraped.error());
  EXPECT_THAT(scraped->body, HasSubstr("dsv3_ucx_worker_replacements_total{model=\""));
  EXPECT_THAT(scraped->body,
              ::testing::ContainsRegex("dsv3_ucx_worker_replacements_total\\{[^}]*\\} [1-9]"));
}

INSTANTIATE_TEST_SUITE_P(Transports, DisaggregatedWorkersTest,
                         ::testing::Values("tcp", "posix,cma,self"), [](const auto& info) {
                           return info.param == "tcp" ? std::string("tcp")
                                                      : std::string("shared_memory");
                         });

}  // namespace
}  // namespace dsv3::disaggregated
