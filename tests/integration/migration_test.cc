// Request migration through the whole cluster (`dsv3 cluster`, real processes): a decode
// worker killed while it streams a request, or while a prompt's KV is on its way to it. The
// router resumes the request on another decode worker as prompt + the tokens streamed so far
// (--migration_limit); the client's stream goes on without an error, without a token lost or
// repeated, and with the tokens an undisturbed run gives (greedy, and seeded sampling with
// penalties). Every block the request held on the survivors comes back.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::Cluster;
using ::dsv3::testing::DecodeFreeBlocks;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::kGolden;
using ::dsv3::testing::MetricSum;
using ::dsv3::testing::WaitForFreeBlocks;
using Proc = ::dsv3::testing::ClusterProc;

constexpr char kMigratedMidStream[] =
    "dsv3_request_migrations_total{model=\"tiny-v3-bf16\",reason=\"decode_failed\"}";
constexpr char kMigratedMidTransfer[] =
    "dsv3_request_migrations_total{model=\"tiny-v3-bf16\",reason=\"kv_transfer_failed\"}";

// The decode worker holding the one request in flight: the one with the fewest free blocks.
const Proc* Holder(const std::vector<const Proc*>& alive) {
  const Proc* holder = nullptr;
  int fewest = 1 << 30;
  for (const Proc* p : alive) {
    const int free_blocks = DecodeFreeBlocks(p->grpc);
    if (free_blocks >= 0 && free_blocks < fewest) {
      fewest = free_blocks;
      holder = p;
    }
  }
  return holder;
}

// Gone, or a zombie its parent (`dsv3 cluster`) has not reaped yet.
bool Exited(int pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// What a stream disturbed by StreamAndSignalHolder gave.
struct Disturbed {
  GrpcResult result;
  const Proc* victim = nullptr;
  absl::Duration longest_gap;  // between two responses
};

// Streams `request`, sends `signal` to the decode worker holding it after `after` tokens
// (SIGKILL: it leaves `alive`), reads the stream to its end.
Disturbed StreamAndSignalHolder(const Cluster& cluster, const v1::GenerateRequest& request,
                                size_t after, int signal, std::vector<const Proc*>& alive) {
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel(cluster.router(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->Generate(&ctx, request);
  Disturbed d;
  GrpcResult& r = d.result;
  v1::GenerateResponse resp;
  absl::Time last = absl::Now();
  while (reader->Read(&resp)) {
    r.ids.insert(r.ids.end(), resp.token_ids().begin(), resp.token_ids().end());
    d.longest_gap = std::max(d.longest_gap, absl::Now() - last);
    last = absl::Now();
    if (resp.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      r.finish = resp.finish_reason();
      r.usage = resp.usage();
    }
    if (d.victim == nullptr && r.ids.size() >= after) {
      d.victim = Holder(alive);
      EXPECT_NE(d.victim, nullptr);
      if (d.victim == nullptr) break;
      kill(d.victim->pid, signal);
      if (signal == SIGKILL) alive.erase(std::find(alive.begin(), alive.end(), d.victim));
    }
  }
  r.status = reader->Finish();
  EXPECT_NE(d.victim, nullptr) << "the stream ended after " << r.ids.size()
                               << " tokens, before the signal";
  return d;
}

GrpcResult StreamAndKillHolder(const Cluster& cluster, const v1::GenerateRequest& request,
                               size_t kill_after, std::vector<const Proc*>& alive) {
  return StreamAndSignalHolder(cluster, request, kill_after, SIGKILL, alive).result;
}

v1::GenerateRequest Sampled(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest request = IdsRequest(prompt, max_tokens);
  request.mutable_sampling()->set_temperature(1.0f);
  request.mutable_sampling()->set_top_k(50);
  request.mutable_sampling()->set_seed(1234);
  request.mutable_sampling()->set_frequency_penalty(0.4f);
  return request;
}

TEST(MigrationTest, KilledDecodeWorkerMidStreamTheStreamGoesOnUnchanged) {
  auto cluster = Cluster::Start(kGolden, 1, 3, 18300);
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive;
  for (int i = 0; i < cluster->Count("decode"); ++i) alive.push_back(&cluster->Get("decode", i));
  const int free_at_start = DecodeFreeBlocks(alive[0]->grpc);
  const std::vector<int32_t> prompt = {0, 17, 5, 99, 3};
  constexpr int kTokens = 1500;  // ~1 s of decoding: the kill lands mid-stream

  // Undisturbed runs first: the reference.
  const GrpcResult greedy_ref = GenerateGrpc(cluster->router(), IdsRequest(prompt, kTokens));
  ASSERT_TRUE(greedy_ref.status.ok()) << greedy_ref.status.error_message();
  ASSERT_EQ(greedy_ref.ids.size(), static_cast<size_t>(kTokens));
  const GrpcResult sampled_ref = GenerateGrpc(cluster->router(), Sampled(prompt, kTokens));
  ASSERT_TRUE(sampled_ref.status.ok()) << sampled_ref.status.error_message();

  // Greedy: the decode worker dies after 100 tokens.
  GrpcResult r = StreamAndKillHolder(*cluster, IdsRequest(prompt, kTokens), 100, alive);
  ASSERT_TRUE(r.status.ok()) << r.status.error_code() << ": " << r.status.error_message();
  EXPECT_EQ(r.ids, greedy_ref.ids);
  EXPECT_EQ(r.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.usage.prompt_tokens(), static_cast<int>(prompt.size()));
  EXPECT_EQ(r.usage.completion_tokens(), kTokens);

  // Seeded sampling with a frequency penalty: the same random stream and penalties go on.
  r = StreamAndKillHolder(*cluster, Sampled(prompt, kTokens), 300, alive);
  ASSERT_TRUE(r.status.ok()) << r.status.error_code() << ": " << r.status.error_message();
  EXPECT_EQ(r.ids, sampled_ref.ids);
  EXPECT_EQ(r.usage.completion_tokens(), kTokens);

  EXPECT_EQ(MetricSum(*cluster, "router", kMigratedMidStream), 2);
  // The survivor got every block back.
  ASSERT_EQ(alive.size(), 1u);
  EXPECT_TRUE(WaitForFreeBlocks(alive[0]->grpc, free_at_start, absl::Seconds(5)))
      << DecodeFreeBlocks(alive[0]->grpc) << " of " << free_at_start;
}

// SIGTERM (a rolling update, a node drain): the decode worker takes no new leases, lets its
// requests run for --drain_timeout, then hands those left to the router, which resumes them
// elsewhere; the client sees nothing but the tokens, and the worker exits cleanly.
TEST(MigrationTest, DrainedDecodeWorkerHandsItsStreamsOver) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18360, 128, {"--worker_drain_timeout=300ms"});
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive = {&cluster->Get("decode", 0), &cluster->Get("decode", 1)};
  const int free_at_start = DecodeFreeBlocks(alive[0]->grpc);
  const std::vector<int32_t> prompt = {7, 1, 300, 42};
  constexpr int kTokens = 1500;
  const GrpcResult reference = GenerateGrpc(cluster->router(), IdsRequest(prompt, kTokens));
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();

  const Disturbed d =
      StreamAndSignalHolder(*cluster, IdsRequest(prompt, kTokens), 50, SIGTERM, alive);
  const Proc* drained = d.victim;
  ASSERT_NE(drained, nullptr);
  const grpc::Status& status = d.result.status;
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(d.result.ids, reference.ids);
  EXPECT_EQ(MetricSum(*cluster, "router", kMigratedMidStream), 1);
  // It exits (cleanly: `dsv3 cluster` logs otherwise) once its streams are handed over.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (!Exited(drained->pid) && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_TRUE(Exited(drained->pid)) << "the drained decode worker is still running";
  const Proc* survivor = drained == alive[0] ? alive[1] : alive[0];
  EXPECT_TRUE(WaitForFreeBlocks(survivor->grpc, free_at_start, absl::Seconds(5)));
}

// A decode worker that stops answering (SIGSTOP: its connections stay open, only its load
// stream goes quiet) is taken out by the router's watchdog, and its stream resumes elsewhere.
// When it comes back, its cancelled sequence's blocks are free and it serves again.
TEST(MigrationTest, StoppedDecodeWorkerIsDetectedAndItsStreamGoesOn) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18380);
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive = {&cluster->Get("decode", 0), &cluster->Get("decode", 1)};
  const int free_at_start = DecodeFreeBlocks(alive[0]->grpc);
  const std::vector<int32_t> prompt = {5, 8, 13, 21};
  constexpr int kTokens = 1500;
  const GrpcResult reference = GenerateGrpc(cluster->router(), IdsRequest(prompt, kTokens));
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();

  const Disturbed d =
      StreamAndSignalHolder(*cluster, IdsRequest(prompt, kTokens), 50, SIGSTOP, alive);
  const Proc* stopped = d.victim;
  ASSERT_NE(stopped, nullptr);
  kill(stopped->pid, SIGCONT);
  const grpc::Status& status = d.result.status;
  const absl::Duration longest_gap = d.longest_gap;
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(d.result.ids, reference.ids);
  EXPECT_EQ(MetricSum(*cluster, "router",
                      "dsv3_request_migrations_total{model=\"tiny-v3-bf16\",reason=\"decode_"
                      "stalled\"}"),
            1);
  // Detected by the watchdog (1.2 s of silence), not by the request's deadline.
  EXPECT_LT(longest_gap, absl::Seconds(5));
  // Resumed, it frees what the cancelled sequence held and rejoins.
  for (const Proc* p : alive) {
    EXPECT_TRUE(WaitForFreeBlocks(p->grpc, free_at_start, absl::Seconds(10)))
        << p->grpc << ": " << DecodeFreeBlocks(p->grpc) << " of " << free_at_start;
  }
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (MetricSum(*cluster, "router",
                   absl::StrCat("dsv3_worker_up{role=\"decode\",address=\"", stopped->grpc,
                                "\"}")) != 1 &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  GrpcResult again = GenerateGrpc(cluster->router(), IdsRequest(prompt, 16));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.ids, std::vector<int32_t>(reference.ids.begin(), reference.ids.begin() + 16));
}

// A prefill worker stopped (SIGSTOP) with prompts routed to it: the watchdog notices within
// about 1.2 s, the router cancels their Prefill calls and computes the prompts on the other
// prefill worker. A lease the stopped worker may still write into is never reused early: the
// decode worker frees it when it expires. Resumed, the worker serves again.
TEST(MigrationTest, StoppedPrefillWorkerItsPromptsGoToAnother) {
  auto cluster = Cluster::Start(kGolden, 2, 1, 18540, 128, {"--router_policy=round_robin"});
  ASSERT_NE(cluster, nullptr);
  const std::string decode = cluster->Get("decode").grpc;
  const int free_at_start = DecodeFreeBlocks(decode);
  const std::vector<testing::Golden> cases = testing::GoldenCases();
  ASSERT_GE(cases.size(), 2u);

  const Proc& stopped = cluster->Get("prefill", 0);
  kill(stopped.pid, SIGSTOP);
  // Round robin: of 4 requests sent before the watchdog notices, 2 go to the stopped worker.
  std::vector<GrpcResult> results(4);
  std::vector<absl::Duration> took(results.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&, i] {
      const absl::Time start = absl::Now();
      results[i] =
          GenerateGrpc(cluster->router(), IdsRequest(cases[i % cases.size()].prompt, 16), 60);
      took[i] = absl::Now() - start;
    });
  }
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < results.size(); ++i) {
    const testing::Golden& g = cases[i % cases.size()];
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(std::vector<int32_t>(results[i].ids.begin(), results[i].ids.begin() + 8), g.greedy)
        << i;
    EXPECT_LT(took[i], absl::Seconds(10)) << i << ": detected by the watchdog, not a deadline";
  }
  EXPECT_GE(MetricSum(*cluster, "router",
                      "dsv3_request_migrations_total{model=\"tiny-v3-bf16\",reason=\"prefill_"
                      "stalled\"}"),
            1);
  kill(stopped.pid, SIGCONT);
  // Every block comes back, the abandoned leases' when they expire (30 s after Reserve).
  EXPECT_TRUE(WaitForFreeBlocks(decode, free_at_start, absl::Seconds(45)))
      << DecodeFreeBlocks(decode) << " of " << free_at_start;
  // The resumed worker is back in rotation and computes correctly.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (MetricSum(*cluster, "router",
                   absl::StrCat("dsv3_worker_up{role=\"prefill\",address=\"", stopped.grpc,
                                "\"}")) != 1 &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  for (size_t i = 0; i < 2; ++i) {  // round robin: one of the two goes to it
    const GrpcResult again = GenerateGrpc(cluster->router(), IdsRequest(cases[i].prompt, 8));
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.ids, cases[i].greedy) << i;
  }
}

// The same over the OpenAI API's server-sent events: the client's stream has every token once.
TEST(MigrationTest, KilledDecodeWorkerMidStreamOverHttpSse) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18440);
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive = {&cluster->Get("decode", 0), &cluster->Get("decode", 1)};
  const int free_at_start = DecodeFreeBlocks(alive[0]->grpc);
  const std::vector<int32_t> prompt = {9, 2, 6, 5, 3};
  constexpr int kTokens = 1500;
  const GrpcResult reference = GenerateGrpc(cluster->router(), IdsRequest(prompt, kTokens));
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();

  nlohmann::json body = {{"model", "tiny-v3-bf16"}, {"prompt", prompt},   {"max_tokens", kTokens},
                         {"temperature", 0},        {"ignore_eos", true}, {"stream", true},
                         {"return_token_ids", true}};
  std::string sse;
  int status = 0;
  std::thread client([&] {
    httplib::Client http = cluster->Http();
    http.set_read_timeout(60);
    auto res = http.Post("/v1/completions", body.dump(), "application/json");
    if (res) {
      status = res->status;
      sse = res->body;
    }
  });
  // Kill the decode worker once the stream holds blocks there, well before its end.
  const Proc* victim = nullptr;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (victim == nullptr && absl::Now() < until) {
    for (const Proc* p : alive) {
      if (DecodeFreeBlocks(p->grpc) < free_at_start) victim = p;
    }
  }
  ASSERT_NE(victim, nullptr);
  absl::SleepFor(absl::Milliseconds(100));
  kill(victim->pid, SIGKILL);
  client.join();
  ASSERT_EQ(status, 200) << sse;
  std::vector<int32_t> streamed;
  bool done = false;
  for (absl::string_view line : absl::StrSplit(sse, '\n')) {
    if (!absl::ConsumePrefix(&line, "data: ")) continue;
    if (line == "[DONE]") {
      done = true;
      continue;
    }
    nlohmann::json chunk = nlohmann::json::parse(line);
    ASSERT_FALSE(chunk.contains("error")) << line;
    for (const auto& c : chunk["choices"]) {
      if (c.contains("token_ids")) {
        for (int32_t id : c["token_ids"]) streamed.push_back(id);
      }
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(streamed, reference.ids);
  EXPECT_EQ(MetricSum(*cluster, "router", kMigratedMidStream), 1);
}

// A rolling restart of the decode workers under 32 streams (SIGTERM, the worker drains and
// exits, it is started again on the same ports, then the next one): no client sees an error,
// and every stream has the tokens of an undisturbed run.
TEST(MigrationTest, RollingRestartOfDecodeWorkersUnderLoadHasNoClientErrors) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18460, 256, {"--worker_drain_timeout=300ms"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<testing::Golden> cases = testing::GoldenCases();
  constexpr int kTokens = 400;
  std::vector<std::vector<int32_t>> references;
  for (const auto& g : cases) {
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, kTokens));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    references.push_back(r.ids);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> completed{0};
  std::vector<std::string> failures;
  absl::Mutex mu;
  std::vector<std::thread> clients;
  for (int i = 0; i < 32; ++i) {
    clients.emplace_back([&, i] {
      for (int n = 0; !stop.load(); ++n) {
        const size_t c = static_cast<size_t>(i + n) % cases.size();
        GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(cases[c].prompt, kTokens));
        absl::MutexLock lock(&mu);
        if (!r.status.ok()) {
          failures.push_back(r.status.error_message());
        } else if (r.ids != references[c]) {
          failures.push_back(absl::StrCat("stream ", i, ": tokens differ from the reference"));
        } else {
          completed.fetch_add(1);
        }
      }
    });
  }
  std::vector<testing::Subprocess> restarted;
  for (int d = 0; d < 2; ++d) {
    absl::SleepFor(absl::Seconds(1));
    const Proc& worker = cluster->Get("decode", d);
    std::ifstream cmdline(absl::StrCat("/proc/", worker.pid, "/cmdline"));
    std::vector<std::string> argv;
    for (std::string arg; std::getline(cmdline, arg, '\0');) argv.push_back(arg);
    ASSERT_FALSE(argv.empty());
    kill(worker.pid, SIGTERM);
    const absl::Time until = absl::Now() + absl::Seconds(15);
    while (!Exited(worker.pid) && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
    ASSERT_TRUE(Exited(worker.pid)) << "decode " << d << " did not exit on SIGTERM";
    auto again = testing::Subprocess::Start(argv, cluster->dir() + "/decode-restarted.log");
    ASSERT_TRUE(again.ok()) << again.status();
    restarted.push_back(std::move(*again));
    const std::string up =
        absl::StrCat("dsv3_worker_up{role=\"decode\",address=\"", worker.grpc, "\"}");
    const absl::Time back = absl::Now() + absl::Seconds(30);
    while (MetricSum(*cluster, "router", up) != 1 && absl::Now() < back) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(MetricSum(*cluster, "router", up), 1) << "decode " << d << " did not come back";
  }
  absl::SleepFor(absl::Seconds(1));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, the first: " << failures[0];
  EXPECT_GE(completed.load(), 32);  // every client finished at least one, across restarts
  EXPECT_GT(MetricSum(*cluster, "router", kMigratedMidStream), 0)
      << "no stream was running on a drained worker at its deadline";
}

// --migration_limit=0: the stream fails fast and clearly, as before migration, and the
// cluster serves on.
TEST(MigrationTest, WithoutMigrationAKilledDecodeWorkerFailsItsStreamFast) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18320, 128, {"--migration_limit=0"});
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive = {&cluster->Get("decode", 0), &cluster->Get("decode", 1)};
  const absl::Time start = absl::Now();
  GrpcResult r = StreamAndKillHolder(*cluster, IdsRequest({0, 17, 5}, 1800), 2, alive);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), ::testing::HasSubstr("failed mid-stream"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_LE(MetricSum(*cluster, "router", kMigratedMidStream), 0);  // -1: no such series
  absl::SleepFor(absl::Seconds(2));                                 // the router notices
  const testing::Golden g = testing::GoldenCases()[0];
  GrpcResult ok = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, 8));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.ids, g.greedy);
}

// The decode worker dies after it granted the lease, while the prompt is in the prefill
// worker (frozen there so the kill lands before the KV is sent): the transfer fails, the
// prefill worker answers ABORTED, and the router resumes the request on the other decode
// worker. The prefix cache is on: the survivors' books balance, and the prompt is a cache
// hit afterwards.
TEST(MigrationTest, KilledDecodeWorkerDuringTheKvTransferTheRequestGoesElsewhere) {
  auto cluster = Cluster::Start(kGolden, 1, 2, 18340);
  ASSERT_NE(cluster, nullptr);
  std::vector<const Proc*> alive = {&cluster->Get("decode", 0), &cluster->Get("decode", 1)};
  const Proc& prefill = cluster->Get("prefill");
  const int free_at_start = DecodeFreeBlocks(alive[0]->grpc);
  std::vector<int32_t> prompt(200);  // three full 64-token blocks
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 11) % 900);
  const std::vector<int32_t> expected = testing::Generate(kGolden, prompt, 8);
  ASSERT_EQ(expected.size(), 8u);

  kill(prefill.pid, SIGSTOP);
  GrpcResult r;
  std::thread client([&] { r = GenerateGrpc(cluster->router(), IdsRequest(prompt, 8)); });
  // The Reserve is answered (the lease holds blocks) while the prompt waits in the prefill
  // worker.
  const Proc* victim = nullptr;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (victim == nullptr && absl::Now() < until) {
    for (const Proc* p : alive) {
      if (DecodeFreeBlocks(p->grpc) < free_at_start) victim = p;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_NE(victim, nullptr) << "no decode worker granted a lease";
  kill(victim->pid, SIGKILL);
  alive.erase(std::find(alive.begin(), alive.end(), victim));
  kill(prefill.pid, SIGCONT);
  client.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_code() << ": " << r.status.error_message();
  EXPECT_EQ(r.ids, expected);
  EXPECT_EQ(MetricSum(*cluster, "router", kMigratedMidTransfer), 1);
  EXPECT_TRUE(WaitForFreeBlocks(alive[0]->grpc, free_at_start, absl::Seconds(5)))
      << DecodeFreeBlocks(alive[0]->grpc) << " of " << free_at_start;
  // Computed once, kept: the same prompt again is served from the prefix cache.
  GrpcResult again = GenerateGrpc(cluster->router(), IdsRequest(prompt, 8));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.ids, expected);
  EXPECT_GE(again.usage.cached_prompt_tokens(), 128);
  EXPECT_TRUE(WaitForFreeBlocks(alive[0]->grpc, free_at_start, absl::Seconds(5)));
}

}  // namespace
}  // namespace dsv3
