// Starts each real server binary on 127.0.0.1 and talks to it over the wire: grpc.health.v1
// (liveness, readiness) over a real socket, /health/live and /health/ready and /metrics over
// HTTP (checked by promtool), SIGTERM drains and exits 0.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/statvfs.h>

#include <fstream>

#include "absl/strings/str_split.h"
#include "common/grpc_channel.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::ReadyInfo;
using ::dsv3::testing::RunCommand;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;

struct ServerCase {
  std::string binary;
  std::string role;
  bool needs_model = false;
  std::vector<std::string> args = {};
  // Ready to take work on its own; a router is not before it sees workers.
  bool ready_alone = true;
};
const char kModel[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";
void PrintTo(const ServerCase& c, std::ostream* os) { *os << c.binary; }

class ServerBinaryTest : public ::testing::TestWithParam<ServerCase> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("server");
    ASSERT_FALSE(dir_.empty());
    std::string ready = dir_ + "/ready.json";
    std::vector<std::string> argv = {BinaryPath(GetParam().binary), "--ready_file=" + ready,
                                     "--drain_timeout=3s"};
    if (GetParam().needs_model) argv.push_back(std::string("--model=") + kModel);
    argv.insert(argv.end(), GetParam().args.begin(), GetParam().args.end());
    auto process = Subprocess::Start(argv, dir_ + "/log.txt");
    ASSERT_TRUE(process.ok()) << process.status();
    process_.emplace(std::move(*process));
    auto info = testing::WaitForReadyFile(ready, *process_, absl::Seconds(30));
    ASSERT_TRUE(info.ok()) << info.status();
    info_ = *info;
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Check(grpc::Status* status,
                                                             const std::string& service = "") {
    auto channel = grpc::CreateChannel(info_.grpc, grpc::InsecureChannelCredentials());
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    *status = stub->Check(&ctx, request, &response);
    return response.status();
  }

  std::string dir_;
  std::optional<Subprocess> process_;
  ReadyInfo info_;
};

TEST_P(ServerBinaryTest, HealthMetricsAndCleanShutdown) {
  EXPECT_EQ(info_.role, GetParam().role);
  EXPECT_EQ(info_.pid, process_->pid());

  // grpc.health.v1 over a real socket: live, and ready unless it needs peers it lacks (a
  // router with no workers is not ready: Kubernetes sends it no traffic).
  using Health = grpc::health::v1::HealthCheckResponse;
  const Health::ServingStatus want_ready =
      GetParam().ready_alone ? Health::SERVING : Health::NOT_SERVING;
  grpc::Status status;
  EXPECT_EQ(Check(&status, "liveness"), Health::SERVING);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Check(&status, "readiness"), want_ready);
  EXPECT_EQ(Check(&status, ""), want_ready);

  // The same over HTTP, then /metrics, valid for promtool.
  std::vector<std::string> http = absl::StrSplit(info_.http, ':');
  ASSERT_EQ(http.size(), 2u);
  httplib::Client client(http[0], std::stoi(http[1]));
  client.set_connection_timeout(5);
  auto live = client.Get("/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  auto ready = client.Get("/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, GetParam().ready_alone ? 200 : 503) << ready->body;
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << "no HTTP answer from " << info_.http;
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("dsv3_build_info{"));
  EXPECT_THAT(res->body, HasSubstr("role=\"" + GetParam().role + "\""));
  EXPECT_THAT(res->body, HasSubstr("dsv3_uptime_seconds "));
  EXPECT_THAT(res->body, HasSubstr("dsv3_process_resident_memory_bytes "));
  std::string metrics_path = dir_ + "/metrics.txt";
  std::ofstream(metrics_path) << res->body;
  auto [rc, out] = RunCommand("promtool check metrics < " + metrics_path);
  EXPECT_EQ(rc, 0) << out;

  // SIGTERM: drain and exit 0, then nothing listens any more.
  process_->Signal(SIGTERM);
  auto code = process_->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << process_->ReadLog();
  EXPECT_THAT(process_->ReadLog(), HasSubstr("draining"));
  Check(&status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

INSTANTIATE_TEST_SUITE_P(
    AllServers, ServerBinaryTest,
    ::testing::Values(
        ServerCase{"dsv3-router", "router", false, {}, /*ready_alone=*/false},
        ServerCase{"dsv3-prefill", "prefill", true}, ServerCase{"dsv3-decode", "decode", true},
        ServerCase{"dsv3-expert", "expert", true},
        // Watches an expert worker that is not there (yet).
        ServerCase{"dsv3-rebalancer", "rebalancer", false, {"--expert_workers=127.0.0.1:1"}}),
    [](const auto& info) { return info.param.role; });

// dsv3.v1.Rebalancer answers what the rebalancer sees: it acts (no --leader_dns), no placement
// yet, and the one expert worker it was given, not up.
TEST(RebalancerBinaryTest, StatusNamesTheExpertWorkersItWatches) {
  std::string dir = MakeTempDir("rebalancer");
  auto process = Subprocess::Start({BinaryPath("dsv3-rebalancer"), "--ready_file=" + dir + "/ready",
                                    "--expert_workers=127.0.0.1:1", "--drain_timeout=2s"},
                                   dir + "/log.txt");
  ASSERT_TRUE(process.ok()) << process.status();
  auto info = testing::WaitForReadyFile(dir + "/ready", *process, absl::Seconds(30));
  ASSERT_TRUE(info.ok()) << info.status();
  auto stub =
      v1::Rebalancer::NewStub(grpc::CreateChannel(info->grpc, grpc::InsecureChannelCredentials()));
  v1::RebalancerStatus status;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {  // the control thread decides leadership within its first 100 ms
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ASSERT_TRUE(stub->GetRebalancerStatus(&ctx, v1::GetRebalancerStatusRequest(), &status).ok());
    if (status.leader()) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  EXPECT_TRUE(status.leader());
  EXPECT_EQ(status.placement_version(), 0);
  ASSERT_EQ(status.expert_workers_size(), 1);
  EXPECT_EQ(status.expert_workers(0).address(), "127.0.0.1:1");
  EXPECT_FALSE(status.expert_workers(0).up());
  EXPECT_EQ(status.expert_workers(0).index(), -1);
  process->Signal(SIGTERM);
  auto code = process->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << process->ReadLog();
}

TEST(ServerBinaryHelpTest, EveryBinaryPrintsHelp) {
  for (const char* binary :
       {"dsv3-router", "dsv3-prefill", "dsv3-decode", "dsv3-expert", "dsv3-rebalancer"}) {
    auto [rc, out] = RunCommand(BinaryPath(binary) + " --help");
    EXPECT_EQ(rc, 0) << binary << ": " << out;
    EXPECT_THAT(out, HasSubstr("--grpc_port")) << binary;
    EXPECT_THAT(out, HasSubstr("--http_port")) << binary;
  }
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " --help");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("commands:"));
}

TEST(ServerBinaryHelpTest, WorkersWithoutAModelSayWhy) {
  for (const char* binary : {"dsv3-prefill", "dsv3-decode", "dsv3-expert"}) {
    auto [rc, out] = RunCommand(BinaryPath(binary));
    EXPECT_EQ(rc, 1) << binary;
    EXPECT_THAT(out, HasSubstr("--model is required")) << binary;
  }
  auto [rc, out] = RunCommand(BinaryPath("dsv3-decode") + " --model=/nonexistent/dir");
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("/nonexistent/dir"));
  auto [rc2, out2] = RunCommand(BinaryPath("dsv3-rebalancer"));
  EXPECT_EQ(rc2, 1);
  EXPECT_THAT(out2, HasSubstr("--expert_workers or --expert_dns"));
}

TEST(ServerBinaryHelpTest, RouterRefusesAWatchdogShorterThanTwoLoadReports) {
  auto [rc, out] =
      RunCommand(BinaryPath("dsv3-router") +
                 " --prefill=127.0.0.1:1 --decode=127.0.0.1:2 --worker_down_after=100ms");
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("--worker_down_after must be at least 400ms"));
}

// An attention worker whose expert workers never answer gives up after --expert_wait naming
// each one and why it is down (the control plane's reason), not only that experts are missing.
TEST(ServerBinaryHelpTest, ExpertWorkersThatNeverAnswerAreNamedWithTheReason) {
  auto [rc, out] = RunCommand(absl::StrCat(
      BinaryPath("dsv3-decode"), " --model=", kModel,
      " --expert_workers=127.0.0.1:1 --expert_wait=2s --ucx_tls=tcp --ucx_net_devices=lo"
      " --grpc_port=0 --http_port=0"));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("do not hold every routed expert yet"));
  EXPECT_THAT(out, HasSubstr("127.0.0.1:1 down: "));
}

// A decode pool that UCX would place in /dev/shm but that does not fit there is refused at
// start-up with what to do, instead of faulting when its pages are first touched.
TEST(ServerBinaryHelpTest, DecodePoolLargerThanDevShmIsAClearError) {
  struct statvfs shm;
  ASSERT_EQ(statvfs("/dev/shm", &shm), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(shm.f_bavail) * shm.f_frsize;
  // The golden model's blocks are 60 KiB (3 layers x 64 rows x 320 B): ask for twice
  // /dev/shm's free space.
  const uint64_t blocks = free_bytes / (60 * 1024) * 2 + 1;
  auto [rc, out] = RunCommand(absl::StrCat(
      BinaryPath("dsv3-decode"), " --model=", kModel, " --kv_pool_memory=ucx --kv_blocks=", blocks,
      " --ucx_tls=posix,cma,self --grpc_port=0 --http_port=0"));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("does not fit /dev/shm"));
}

TEST(ServerBinaryHelpTest, UnknownFlagIsRejected) {
  auto [rc, out] = RunCommand(BinaryPath("dsv3-router") + " --no_such_flag=1");
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("no_such_flag"));
}

TEST(ServerBinaryPortTest, PortInUseIsAClearError) {
  std::string dir = MakeTempDir("port");
  std::string ready = dir + "/ready.json";
  auto first = Subprocess::Start(
      {BinaryPath("dsv3-expert"), std::string("--model=") + kModel, "--ready_file=" + ready},
      dir + "/first.txt");
  ASSERT_TRUE(first.ok());
  auto info = testing::WaitForReadyFile(ready, *first, absl::Seconds(30));
  ASSERT_TRUE(info.ok()) << info.status();
  std::string port = std::vector<std::string>(absl::StrSplit(info->grpc, ':'))[1];
  auto second = Subprocess::Start(
      {BinaryPath("dsv3-expert"), std::string("--model=") + kModel, "--grpc_port=" + port},
      dir + "/second.txt");
  ASSERT_TRUE(second.ok());
  auto code = second->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(second->ReadLog(), HasSubstr("cannot listen for gRPC"));
}

// A call to a peer that stops answering (a stopped process; a host that vanished looks the
// same to TCP) fails within keepalive time + timeout, not at its deadline: the cluster's
// channels ping. Here a decode worker's WatchLoad stream, stopped after its first report.
// --metrics_port: /metrics (which names the workers' addresses) on a listener of its own, off
// the router's public HTTP port; the probes answer on both.
TEST(ServerBinaryPortTest, MetricsOnAPortOfTheirOwnLeaveTheApiPort) {
  std::string dir = MakeTempDir("metrics-port");
  const std::string ready = dir + "/ready.json";
  auto process = Subprocess::Start(
      {BinaryPath("dsv3-router"), "--ready_file=" + ready, "--metrics_port=0"}, dir + "/log.txt");
  ASSERT_TRUE(process.ok()) << process.status();
  auto info = testing::WaitForReadyFile(ready, *process, absl::Seconds(30));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_NE(info->metrics, info->http);
  httplib::Client api("http://" + info->http), metrics("http://" + info->metrics);
  auto on_api = api.Get("/metrics");
  ASSERT_TRUE(on_api);
  EXPECT_EQ(on_api->status, 404);
  EXPECT_THAT(on_api->body, ::testing::Not(HasSubstr("dsv3_")));
  auto on_metrics = metrics.Get("/metrics");
  ASSERT_TRUE(on_metrics);
  EXPECT_EQ(on_metrics->status, 200);
  EXPECT_THAT(on_metrics->body, HasSubstr("dsv3_build_info{"));
  for (httplib::Client* client : {&api, &metrics}) {
    auto live = client->Get("/health/live");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
  }
}

TEST(KeepaliveTest, ACallToAStoppedPeerFailsWithinTheKeepaliveNotItsDeadline) {
  const std::string dir = MakeTempDir("keepalive");
  auto process = Subprocess::Start(
      {BinaryPath("dsv3-decode"), "--ready_file=" + dir + "/ready",
       std::string("--model=") + kModel, "--grpc_keepalive_time=1s", "--grpc_keepalive_timeout=1s"},
      dir + "/log.txt");
  ASSERT_TRUE(process.ok()) << process.status();
  auto info = testing::WaitForReadyFile(dir + "/ready", *process, absl::Seconds(30));
  ASSERT_TRUE(info.ok()) << info.status();
  const KeepaliveOptions keepalive{absl::Seconds(1), absl::Seconds(1)};
  auto stub = v1::WorkerStatus::NewStub(ClusterChannel(info->grpc, keepalive));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->WatchLoad(&ctx, v1::WatchLoadRequest());
  v1::LoadReport report;
  ASSERT_TRUE(reader->Read(&report));
  process->Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  while (reader->Read(&report)) {
  }
  const grpc::Status status = reader->Finish();
  const absl::Duration took = absl::Now() - stopped;
  process->Signal(SIGCONT);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_LT(took, absl::Seconds(10)) << "the stream waited for its deadline";
}

}  // namespace
}  // namespace dsv3
