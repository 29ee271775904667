// The router's lifecycle and its own limits. A router told to stop (SIGTERM, as Kubernetes
// does in a rolling update): it reports not
// ready at once (grpc.health.v1 "readiness", /health/ready) while staying live, refuses new
// work (HTTP 503 with OpenAI's error JSON and Connection: close, gRPC UNAVAILABLE: clients
// retry on another replica), lets the streams in flight finish, and exits 0. Streams still
// running at --drain_timeout end with UNAVAILABLE, and the decode worker gets their blocks
// back. And no request runs past --max_request_timeout, whatever deadline its client set.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
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
using ::dsv3::testing::Subprocess;
using ::dsv3::testing::WaitForFreeBlocks;
using ::testing::HasSubstr;
using Health = grpc::health::v1::HealthCheckResponse;

// grpc.health.v1 Check of `service`; UNKNOWN when the call fails.
Health::ServingStatus Check(const std::string& address, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  Health response;
  if (!stub->Check(&ctx, request, &response).ok()) return Health::UNKNOWN;
  return response.status();
}

bool WaitForStatus(const std::string& address, const std::string& service,
                   Health::ServingStatus want, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Check(address, service) != want) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

httplib::Client HttpClient(const std::string& address) {
  std::vector<std::string> parts = absl::StrSplit(address, ':');
  httplib::Client client(parts[0], std::stoi(parts[1]));
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  return client;
}

struct Router {
  std::optional<Subprocess> process;
  testing::ReadyInfo info;
};

// A router of its own (the cluster's stays up), on `port` and `port` + 1.
Router StartRouter(const Cluster& cluster, int port, const std::string& drain_timeout,
                   const std::vector<std::string>& extra = {}) {
  const std::string dir = testing::MakeTempDir("router-drain");
  Router router;
  std::vector<std::string> argv = {
      testing::BinaryPath("dsv3-router"),         absl::StrCat("--grpc_port=", port),
      absl::StrCat("--http_port=", port + 1),     "--ready_file=" + dir + "/router.ready",
      "--prefill=" + cluster.Get("prefill").grpc, "--decode=" + cluster.Get("decode").grpc,
      "--drain_timeout=" + drain_timeout};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = Subprocess::Start(argv, dir + "/router.log");
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return router;
  router.process.emplace(std::move(*process));
  auto info = testing::WaitForReadyFile(dir + "/router.ready", *router.process, absl::Seconds(30));
  EXPECT_TRUE(info.ok()) << info.status();
  if (info.ok()) router.info = *info;
  return router;
}

// Three long greedy streams at once: with --decode_max_running=1 the decode worker runs
// them one after another, so the router has requests in flight for seconds.
struct Streams {
  std::vector<GrpcResult> results = std::vector<GrpcResult>(3);
  std::vector<std::thread> threads;
  std::vector<absl::Time> ended = std::vector<absl::Time>(3);

  void Start(const std::string& router) {
    for (size_t i = 0; i < results.size(); ++i) {
      threads.emplace_back([this, router, i] {
        results[i] = GenerateGrpc(router, IdsRequest({0, 17, 5, static_cast<int32_t>(i)}, 1900));
        ended[i] = absl::Now();
      });
    }
  }
  void Join() {
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }
  // A test that stops at a failed assertion still joins (a joinable thread's destructor would
  // abort the test binary and leave its cluster running on the ports a rerun needs).
  ~Streams() { Join(); }
};

// Waits until the router has requests in flight on the decode worker (blocks leased).
bool WaitForBlocksInUse(const std::string& decode, int free_at_start) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (DecodeFreeBlocks(decode) == free_at_start) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

TEST(RouterDrainTest, SigtermRefusesNewWorkAndLetsStreamsFinish) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 18500, 128, {"--decode_max_running=1"});
  ASSERT_NE(cluster, nullptr);
  const std::string decode = cluster->Get("decode").grpc;
  const int free_at_start = DecodeFreeBlocks(decode);
  Router router = StartRouter(*cluster, 18510, "60s");
  ASSERT_TRUE(router.process.has_value());
  const std::string address = router.info.grpc;
  ASSERT_TRUE(WaitForStatus(address, "readiness", Health::SERVING, absl::Seconds(10)));
  EXPECT_EQ(Check(address, ""), Health::SERVING);

  Streams streams;
  streams.Start(address);
  ASSERT_TRUE(WaitForBlocksInUse(decode, free_at_start));
  const absl::Time sigterm = absl::Now();
  router.process->Signal(SIGTERM);

  // Not ready at once, still live.
  EXPECT_TRUE(WaitForStatus(address, "readiness", Health::NOT_SERVING, absl::Seconds(1)));
  EXPECT_EQ(Check(address, ""), Health::NOT_SERVING);
  EXPECT_EQ(Check(address, "liveness"), Health::SERVING);
  httplib::Client http = HttpClient(router.info.http);
  auto live = http.Get("/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  auto ready = http.Get("/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);

  // New work is refused, over HTTP and gRPC.
  auto refused = http.Post("/v1/completions", R"({"model":"tiny-v3-bf16","prompt":[1,2,3]})",
                           "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_THAT(refused->body, HasSubstr("\"type\":\"service_unavailable_error\""));
  EXPECT_THAT(refused->body, HasSubstr("shutting down"));
  EXPECT_EQ(refused->get_header_value("Connection"), "close");
  const GrpcResult new_grpc = GenerateGrpc(address, IdsRequest({1, 2, 3}, 4), 10);
  EXPECT_EQ(new_grpc.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << new_grpc.status.error_message();
  const absl::Time checked = absl::Now();

  // The streams in flight finish, whole, after the checks above: the router drained them.
  streams.Join();
  absl::Time last_end = sigterm;
  for (size_t i = 0; i < streams.results.size(); ++i) {
    EXPECT_TRUE(streams.results[i].status.ok())
        << i << ": " << streams.results[i].status.error_message();
    EXPECT_EQ(streams.results[i].ids.size(), 1900u) << i;
    last_end = std::max(last_end, streams.ended[i]);
  }
  EXPECT_GT(last_end, checked) << "every stream had ended before the checks: the test did not "
                                  "see a drain with requests in flight";
  auto code = router.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << router.process->ReadLog();
  EXPECT_TRUE(WaitForFreeBlocks(decode, free_at_start, absl::Seconds(5)));
}

TEST(RouterDrainTest, StreamsLeftAtTheDrainTimeoutEndWithUnavailable) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 18520, 128, {"--decode_max_running=1"});
  ASSERT_NE(cluster, nullptr);
  const std::string decode = cluster->Get("decode").grpc;
  const int free_at_start = DecodeFreeBlocks(decode);
  Router router = StartRouter(*cluster, 18530, "300ms");
  ASSERT_TRUE(router.process.has_value());
  ASSERT_TRUE(WaitForStatus(router.info.grpc, "readiness", Health::SERVING, absl::Seconds(10)));

  Streams streams;
  streams.Start(router.info.grpc);
  ASSERT_TRUE(WaitForBlocksInUse(decode, free_at_start));
  router.process->Signal(SIGTERM);
  auto code = router.process->Wait(absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << router.process->ReadLog();
  streams.Join();
  int cut = 0;
  for (const GrpcResult& r : streams.results) {
    if (r.status.ok()) continue;
    ++cut;
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
    EXPECT_THAT(r.status.error_message(), HasSubstr("shut down"));
  }
  EXPECT_GE(cut, 1) << "no stream was still running at the 300 ms drain timeout";
  EXPECT_THAT(router.process->ReadLog(), HasSubstr("drain timeout: cancelling"));
  // What the cut requests held on the decode worker comes back.
  EXPECT_TRUE(WaitForFreeBlocks(decode, free_at_start, absl::Seconds(10)))
      << DecodeFreeBlocks(decode) << " of " << free_at_start;
}

TEST(RouterLimitsTest, NoRequestRunsPastTheMaximumTimeout) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 18580);
  ASSERT_NE(cluster, nullptr);
  const std::string decode = cluster->Get("decode").grpc;
  const int free_at_start = DecodeFreeBlocks(decode);
  Router router = StartRouter(*cluster, 18590, "10s", {"--max_request_timeout=300ms"});
  ASSERT_TRUE(router.process.has_value());
  ASSERT_TRUE(WaitForStatus(router.info.grpc, "readiness", Health::SERVING, absl::Seconds(10)));
  // ~1.3 s of decoding asked for, with a 60 s gRPC deadline and a 60 s timeout_ms.
  v1::GenerateRequest request = IdsRequest({0, 17, 5}, 1900);
  request.set_timeout_ms(60000);
  const absl::Time start = absl::Now();
  const GrpcResult r = GenerateGrpc(router.info.grpc, request, 60);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << r.status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_LT(r.ids.size(), 1900u);
  EXPECT_TRUE(WaitForFreeBlocks(decode, free_at_start, absl::Seconds(10)));
}

// When a call of the second stream on one connection first hears back from the router, and
// when the first stream's last token arrived. Two Generate calls over one channel (one HTTP/2
// connection): a long one, then a short one started once the long one streams.
std::pair<absl::Time, absl::Time> TwoStreamsOnOneConnection(const std::string& router) {
  auto stub =
      v1::Inference::NewStub(grpc::CreateChannel(router, grpc::InsecureChannelCredentials()));
  grpc::ClientContext long_ctx, short_ctx;
  long_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  short_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto long_call = stub->Generate(&long_ctx, IdsRequest({0, 17, 5}, 1500));
  v1::GenerateResponse response;
  EXPECT_TRUE(long_call->Read(&response));
  absl::Time short_first = absl::InfiniteFuture();
  std::thread short_thread([&] {
    auto short_call = stub->Generate(&short_ctx, IdsRequest({0, 17, 5}, 2));
    v1::GenerateResponse r;
    if (short_call->Read(&r)) short_first = absl::Now();
    while (short_call->Read(&r)) {
    }
    EXPECT_TRUE(short_call->Finish().ok());
  });
  absl::Time long_last = absl::Now();
  while (long_call->Read(&response)) long_last = absl::Now();
  EXPECT_TRUE(long_call->Finish().ok());
  short_thread.join();
  return {short_first, long_last};
}

// --max_streams_per_connection bounds the calls one client connection has open: the second
// waits for the first to end (HTTP/2 MAX_CONCURRENT_STREAMS), where without the limit both
// stream at once.
TEST(RouterLimitsTest, ACallBeyondTheConnectionsStreamLimitWaitsForOneToEnd) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 18620);
  ASSERT_NE(cluster, nullptr);
  Router router = StartRouter(*cluster, 18630, "10s", {"--max_streams_per_connection=1"});
  ASSERT_TRUE(router.process.has_value());
  ASSERT_TRUE(WaitForStatus(router.info.grpc, "readiness", Health::SERVING, absl::Seconds(10)));
  auto [limited_short, limited_long] = TwoStreamsOnOneConnection(router.info.grpc);
  EXPECT_GE(limited_short, limited_long) << "the second call ran beside the first";
  auto [open_short, open_long] = TwoStreamsOnOneConnection(cluster->router());
  EXPECT_LT(open_short, open_long) << "without the limit the calls stream at once";
}

}  // namespace
}  // namespace dsv3
