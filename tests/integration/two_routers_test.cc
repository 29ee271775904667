// Two routers serving the same workers at once, as the Helm chart runs them (router.replicas:
// 2): they share no state, compete for the decode workers' KV blocks (each waits for
// capacity when the pools are full), and every request of both is served correctly. When one
// router dies under load, the other serves on and every block the dead one's requests held
// comes back.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::Cluster;
using ::dsv3::testing::DecodeFreeBlocks;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::GoldenCases;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::kGolden;
using ::dsv3::testing::WaitForFreeBlocks;

TEST(TwoRoutersTest, BothServeTheSameWorkersAndEitherMayDie) {
  // Small pools: 16 blocks of 64 tokens per worker, so concurrent requests contend.
  auto cluster = Cluster::Start(kGolden, 2, 2, 18400, 16);
  ASSERT_NE(cluster, nullptr);
  std::vector<std::string> prefill, decode;
  for (int i = 0; i < cluster->Count("prefill"); ++i)
    prefill.push_back(cluster->Get("prefill", i).grpc);
  for (int i = 0; i < cluster->Count("decode"); ++i)
    decode.push_back(cluster->Get("decode", i).grpc);
  const int free_at_start = DecodeFreeBlocks(decode[0]);
  const std::string dir = testing::MakeTempDir("two-routers");
  auto second = testing::Subprocess::Start(
      {testing::BinaryPath("dsv3-router"), "--grpc_port=18420", "--http_port=18421",
       "--ready_file=" + dir + "/router.ready", "--prefill=" + absl::StrJoin(prefill, ","),
       "--decode=" + absl::StrJoin(decode, ",")},
      dir + "/router.log");
  ASSERT_TRUE(second.ok()) << second.status();
  auto ready = testing::WaitForReadyFile(dir + "/router.ready", *second, absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status();
  // Listening is not serving: wait until the second router sees the workers (its
  // readiness probe), as Kubernetes would before sending it traffic.
  {
    const size_t colon = ready->http.rfind(':');
    httplib::Client probe(ready->http.substr(0, colon), std::stoi(ready->http.substr(colon + 1)));
    const absl::Time until = absl::Now() + absl::Seconds(30);
    auto res = probe.Get("/health/ready");
    while ((!res || res->status != 200) && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(50));
      res = probe.Get("/health/ready");
    }
    ASSERT_TRUE(res && res->status == 200) << "the second router never became ready";
  }
  const std::vector<std::string> routers = {cluster->router(), ready->grpc};

  // 16 requests at once, half through each router, each reserving 4 blocks (room for 200
  // tokens): twice what the two pools hold, so some wait for capacity.
  const std::vector<testing::Golden> cases = GoldenCases();
  auto run_all = [&](int count, std::vector<GrpcResult>& results) {
    results.assign(static_cast<size_t>(count), GrpcResult());
    std::vector<std::thread> clients;
    for (int i = 0; i < count; ++i) {
      clients.emplace_back([&, i] {
        const testing::Golden& g = cases[static_cast<size_t>(i) % cases.size()];
        results[static_cast<size_t>(i)] =
            GenerateGrpc(routers[static_cast<size_t>(i) % 2], IdsRequest(g.prompt, 200), 60);
      });
    }
    for (auto& t : clients) t.join();
  };
  std::vector<GrpcResult> results;
  run_all(16, results);
  for (size_t i = 0; i < results.size(); ++i) {
    const testing::Golden& g = cases[i % cases.size()];
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    ASSERT_EQ(results[i].ids.size(), 200u) << i;
    EXPECT_EQ(std::vector<int32_t>(results[i].ids.begin(), results[i].ids.begin() + 8), g.greedy)
        << i;
  }
  for (const std::string& d : decode) {
    EXPECT_TRUE(WaitForFreeBlocks(d, free_at_start, absl::Seconds(5))) << d;
  }

  // Long streams through both; the cluster's router dies mid-way. The second serves its own
  // to the end, and the dead router's sequences are cancelled on the workers.
  // The pools hold one such stream per decode worker at a time, so most wait for capacity;
  // one of the doomed router's may still end before the kill when steps are fast: it must
  // have ended before the kill, and at least one of them is cut.
  std::vector<GrpcResult> streams(6);
  std::vector<absl::Time> ended(6);
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&, i] {
      streams[static_cast<size_t>(i)] =
          GenerateGrpc(routers[static_cast<size_t>(i) % 2], IdsRequest({3, 1, 4, 1, 5}, 600), 60);
      ended[static_cast<size_t>(i)] = absl::Now();
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  kill(cluster->Get("router").pid, SIGKILL);
  const absl::Time killed = absl::Now();
  for (auto& t : clients) t.join();
  for (size_t i = 1; i < streams.size(); i += 2) {
    ASSERT_TRUE(streams[i].status.ok()) << i << ": " << streams[i].status.error_message();
    EXPECT_EQ(streams[i].ids.size(), 600u);
    EXPECT_EQ(streams[i].ids, streams[1].ids);
  }
  int cut = 0;
  for (size_t i = 0; i < streams.size(); i += 2) {
    if (!streams[i].status.ok()) {
      ++cut;
    } else {
      // (Its last message may have been on the wire as the router died.)
      EXPECT_LT(ended[i], killed + absl::Milliseconds(200))
          << "a stream through the killed router succeeded after the kill";
    }
  }
  EXPECT_GE(cut, 1) << "every stream through the killed router had ended before it died";
  // A cut stream's blocks come back at once (its Decode call is cancelled). A lease granted
  // in the milliseconds between a Reserve and its UpdatePrefill or Decode has no call yet
  // that could be cancelled: it comes back when it expires, 30 s after the Reserve (the
  // router's lease_ms; once in CI a kill landed in that window).
  for (const std::string& d : decode) {
    EXPECT_TRUE(WaitForFreeBlocks(d, free_at_start, absl::Seconds(40)))
        << d << ": " << DecodeFreeBlocks(d) << " of " << free_at_start;
  }
  GrpcResult after = GenerateGrpc(routers[1], IdsRequest(cases[0].prompt, 8));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.ids, cases[0].greedy);
}

}  // namespace
}  // namespace dsv3
