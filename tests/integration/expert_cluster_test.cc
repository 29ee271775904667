// Expert workers (`dsv3-expert`) in a real cluster: `dsv3 cluster --experts N` runs the
// routed experts on N processes reached over UCX. Tokens must equal the single-process
// engine's (`dsv3 generate`) and the reference's golden tokens with 1, 2 and 3 expert workers,
// with replicated placements, and when a replicated worker dies; a worker without replicas
// that dies fails the requests that need it with UNAVAILABLE, nothing else crashes, and the
// cluster serves again once the worker is back.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::Cluster;
using ::dsv3::testing::Generate;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::Golden;
using ::dsv3::testing::GoldenCases;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::kGolden;
using ::dsv3::testing::Subprocess;

std::string GoldenDir(const std::string& name) {
  return std::string(DSV3_SOURCE_DIR "/tests/data/golden/") + name;
}

std::unique_ptr<v1::Expert::Stub> ExpertStub(const std::string& address) {
  return v1::Expert::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

v1::ExpertPlacement GetPlacement(const std::string& address) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ExpertPlacement p;
  grpc::Status st = ExpertStub(address)->GetPlacement(&ctx, v1::GetPlacementRequest(), &p);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return p;
}

// Gives every expert a second copy on the next worker and applies it to every worker.
void ApplyReplicatedPlacement(const Cluster& cluster, int workers) {
  v1::ExpertPlacement p = GetPlacement(cluster.Get("expert", 0).grpc);
  p.set_version(p.version() + 1);
  for (v1::LayerPlacement& layer : *p.mutable_layers()) {
    for (v1::ExpertReplicas& r : *layer.mutable_replicas()) {
      r.add_workers((r.workers(0) + 1) % workers);
    }
  }
  for (int w = 0; w < workers; ++w) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ApplyPlacementResponse response;
    grpc::Status st = ExpertStub(cluster.Get("expert", w).grpc)->ApplyPlacement(&ctx, p, &response);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(response.version(), p.version());
  }
}

// Sends requests until both attention workers log the placement `version` in effect.
bool WaitForPlacementInEffect(const Cluster& cluster, int64_t version, const Golden& g) {
  const std::string line = absl::StrCat("expert placement version ", version, " in effect");
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(g.prompt, 4));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    if (absl::StrContains(testing::ReadFile(cluster.dir() + "/prefill-0.log"), line) &&
        absl::StrContains(testing::ReadFile(cluster.dir() + "/decode-0.log"), line)) {
      return true;
    }
  }
  return false;
}

void ExpectGoldenTokens(const Cluster& cluster, const std::string& model, bool vs_generate) {
  for (const Golden& g : GoldenCases(model)) {
    GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(g.prompt, g.greedy.size()));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, g.greedy);
    if (vs_generate) {
      EXPECT_EQ(r.ids, Generate(model, g.prompt, static_cast<int>(g.greedy.size())));
    }
  }
}

// --- Equality: 1, 2, 3 expert workers on every golden model ---------------------------------

struct EqualityCase {
  std::string model;
  int experts;
  int port_base;
  bool speculative = false;
};

class ExpertEqualityTest : public ::testing::TestWithParam<EqualityCase> {};

TEST_P(ExpertEqualityTest, GreedyEqualsGenerateAndTheReference) {
  const EqualityCase& c = GetParam();
  std::vector<std::string> extra = {absl::StrCat("--experts=", c.experts)};
  if (c.speculative) extra.push_back("--speculative=mtp");
  auto cluster = Cluster::Start(GoldenDir(c.model), 1, 1, c.port_base, 128, extra);
  ASSERT_NE(cluster, nullptr);
  ExpectGoldenTokens(*cluster, GoldenDir(c.model), /*vs_generate=*/c.experts == 2);
  // Each worker holds its share of the experts (all MoE layers, MTP included).
  for (int w = 0; w < c.experts; ++w) {
    v1::ExpertPlacement p = GetPlacement(cluster->Get("expert", w).grpc);
    EXPECT_EQ(p.num_workers(), c.experts);
    EXPECT_EQ(p.version(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    GoldenModels, ExpertEqualityTest,
    ::testing::Values(EqualityCase{"tiny-v3-bf16", 1, 17800},
                      EqualityCase{"tiny-v3-bf16", 2, 17820},
                      EqualityCase{"tiny-v3-bf16", 3, 17840}, EqualityCase{"tiny-v3-fp8", 2, 17860},
                      EqualityCase{"tiny-v3-fp8", 3, 17880},
                      EqualityCase{"tiny-v3-mtp", 2, 17900, /*speculative=*/true}),
    [](const auto& info) {
      std::string name = absl::StrCat(info.param.model, "_", info.param.experts, "_workers",
                                      info.param.speculative ? "_mtp" : "");
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

// --- The bench preset (64 experts in 8 groups, top-6, FP8): 2 expert workers --------------

TEST(ExpertBenchPresetTest, TwoExpertWorkersEqualColocatedAndGenerate) {
  const std::string model = testing::MakeTempDir("bench-preset");
  // 1.9 GB: removed however the test ends.
  struct RemoveAll {
    std::string dir;
    ~RemoveAll() { std::filesystem::remove_all(dir); }
  } cleanup{model};
  auto [rc, log] = testing::RunCommand(absl::StrCat(
      BinaryPath("dsv3"), " make-model --preset bench --dtype fp8 --mtp 0 --seed 11 --out ", model,
      " 2>&1"));
  ASSERT_EQ(rc, 0) << log;
  const std::vector<std::vector<int32_t>> prompts = {{1, 200, 3000, 45000, 7}, {99, 98, 97}};
  constexpr int kTokens = 12;
  std::vector<std::vector<int32_t>> colocated;
  {
    auto cluster = Cluster::Start(model, 1, 1, 17960, 64);
    ASSERT_NE(cluster, nullptr);
    for (const auto& p : prompts) {
      GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(p, kTokens), 300);
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      colocated.push_back(r.ids);
    }
  }
  auto cluster = Cluster::Start(model, 1, 1, 18000, 64, {"--experts=2"});
  ASSERT_NE(cluster, nullptr);
  for (size_t i = 0; i < prompts.size(); ++i) {
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(prompts[i], kTokens), 300);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_EQ(r.ids.size(), static_cast<size_t>(kTokens));
    EXPECT_EQ(r.ids, colocated[i]);
    EXPECT_EQ(r.ids, Generate(model, prompts[i], kTokens));
  }
}

// --- Replicas: a new placement at a step boundary, then a worker dies ----------------------

TEST(ExpertReplicaTest, ReplicatedPlacementKeepsTokensAndSurvivesAWorkerDeath) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 17920, 128, {"--experts=3"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<Golden> cases = GoldenCases();
  ApplyReplicatedPlacement(*cluster, 3);
  ASSERT_TRUE(WaitForPlacementInEffect(*cluster, 2, cases[0]));
  ExpectGoldenTokens(*cluster, kGolden, /*vs_generate=*/false);
  // Every expert has a second copy: with worker 1 gone, requests still give the same tokens.
  kill(cluster->Get("expert", 1).pid, SIGKILL);
  ExpectGoldenTokens(*cluster, kGolden, /*vs_generate=*/false);
  for (const char* role : {"router", "prefill", "decode"}) {
    EXPECT_EQ(kill(cluster->Get(role).pid, 0), 0) << role << " died";
  }
}

// --- Failure without replicas: UNAVAILABLE, nothing crashes, recovery ---------------------

TEST(ExpertFailureTest, KilledExpertWorkerFailsItsRequestsThenTheClusterRecovers) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 17940, 128, {"--experts=2", "--ucx_transports=tcp"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<Golden> cases = GoldenCases();
  const testing::ClusterProc victim = cluster->Get("expert", 1);
  // Load: long streams in flight when the worker dies.
  constexpr int kStreams = 6;
  std::vector<GrpcResult> results(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      results[static_cast<size_t>(i)] =
          GenerateGrpc(cluster->router(), IdsRequest(cases[i % cases.size()].prompt, 1500), 120);
    });
  }
  absl::SleepFor(absl::Milliseconds(800));
  kill(victim.pid, SIGKILL);
  const absl::Time killed = absl::Now();
  for (auto& t : clients) t.join();
  EXPECT_LT(absl::Now() - killed, absl::Seconds(15));  // ended by the failure, not a timeout
  for (const GrpcResult& r : results) {
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << r.status.error_message() << " after " << r.ids.size() << " tokens";
    EXPECT_THAT(r.status.error_message(), ::testing::HasSubstr("expert worker"));
  }
  for (const char* role : {"router", "prefill", "decode"}) {
    EXPECT_EQ(kill(cluster->Get(role).pid, 0), 0) << role << " died";
  }
  // While it is down, each request either never needs its experts (and is right) or fails
  // fast and clearly; with these prompts some do need them.
  int unavailable = 0;
  for (const Golden& g : cases) {
    const absl::Time start = absl::Now();
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, 8));
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    if (r.status.ok()) {
      EXPECT_EQ(r.ids, std::vector<int32_t>(g.greedy.begin(), g.greedy.begin() + 8));
    } else {
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
      ++unavailable;
    }
  }
  EXPECT_GT(unavailable, 0);

  // The worker comes back at the same address (as Kubernetes restarts a pod): the attention
  // workers re-join it and serve the same tokens again.
  const std::vector<std::string> grpc_hp = absl::StrSplit(victim.grpc, ':');
  const std::vector<std::string> http_hp = absl::StrSplit(victim.http, ':');
  auto back =
      Subprocess::Start({BinaryPath("dsv3-expert"), std::string("--model=") + kGolden,
                         "--num_shards=2", "--shard_index=1", "--grpc_port=" + grpc_hp[1],
                         "--http_port=" + http_hp[1], "--ucx_tls=tcp", "--ucx_net_devices=lo"},
                        cluster->dir() + "/expert-1-restarted.log");
  ASSERT_TRUE(back.ok()) << back.status();
  GrpcResult r;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(300));
    r = GenerateGrpc(cluster->router(), IdsRequest(cases[0].prompt, cases[0].greedy.size()));
  } while (!r.status.ok() && absl::Now() < deadline);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids, cases[0].greedy);
  back->Signal(SIGTERM);
  EXPECT_EQ(*back->Wait(absl::Seconds(20)), 0);
}

// --- Failover: a worker that stays down has its experts copied to the live ones -----------

TEST(ExpertFailureTest, ExpertsOfAWorkerThatStaysDownAreServedByTheOthers) {
  auto cluster =
      Cluster::Start(kGolden, 1, 1, 18220, 128,
                     {"--experts=2", "--ucx_transports=tcp", "--expert_failover_after=1s"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<Golden> cases = GoldenCases();
  ExpectGoldenTokens(*cluster, kGolden, /*vs_generate=*/false);
  kill(cluster->Get("expert", 1).pid, SIGKILL);
  // Within a few seconds every request succeeds again, with the same tokens, without the
  // worker coming back.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool all_ok = false;
  while (!all_ok && absl::Now() < deadline) {
    all_ok = true;
    for (const Golden& g : cases) {
      GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, g.greedy.size()));
      if (!r.status.ok()) {
        EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
        all_ok = false;
        break;
      }
      EXPECT_EQ(r.ids, g.greedy);
    }
    if (!all_ok) absl::SleepFor(absl::Milliseconds(300));
  }
  ASSERT_TRUE(all_ok) << "the live expert worker never took over";
  // The live worker now holds every expert of the placement in effect.
  v1::ExpertPlacement p = GetPlacement(cluster->Get("expert", 0).grpc);
  EXPECT_GE(p.version(), 2);
  for (const v1::LayerPlacement& layer : p.layers()) {
    for (const v1::ExpertReplicas& r : layer.replicas()) {
      EXPECT_THAT(r.workers(), ::testing::Contains(0));
    }
  }
  ExpectGoldenTokens(*cluster, kGolden, /*vs_generate=*/false);
}

}  // namespace
}  // namespace dsv3
