// The router finds its workers through a DNS name (as behind a Kubernetes headless
// Service), re-resolved periodically: workers that the name resolves to are watched, serve,
// and show up in dsv3_worker_up; a worker that stops is taken out and comes back.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;

const char kModel[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";

Subprocess StartOrDie(const std::vector<std::string>& argv, const std::string& log) {
  auto p = Subprocess::Start(argv, log);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

// The router's view of one worker from its /metrics: 1 up, 0 down, -1 unknown.
int WorkerUp(int http_port, const std::string& address) {
  httplib::Client client("127.0.0.1", http_port);
  client.set_connection_timeout(2);
  auto res = client.Get("/metrics");
  if (!res) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (absl::StartsWith(line, "dsv3_worker_up{") &&
        absl::StrContains(line, absl::StrCat("address=\"", address, "\""))) {
      return absl::EndsWith(line, " 1") ? 1 : 0;
    }
  }
  return -1;
}

bool WaitForUp(int http_port, const std::string& address, int want, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (WorkerUp(http_port, address) == want) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

// Waits until the router's readiness probe (/health/ready) answers `want` (200 or 503).
bool WaitForReady(int http_port, int want, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    httplib::Client client("127.0.0.1", http_port);
    client.set_connection_timeout(2);
    auto res = client.Get("/health/ready");
    if (res && res->status == want) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

grpc::Status Generate(const std::string& router) {
  auto stub =
      v1::Inference::NewStub(grpc::CreateChannel(router, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::GenerateRequest request;
  for (int t : {0, 17, 5}) request.mutable_token_ids()->add_ids(t);
  request.mutable_sampling()->set_max_tokens(4);
  auto reader = stub->Generate(&ctx, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

TEST(WorkerDiscoveryTest, WorkersFoundByDnsNameServeAndAreWatched) {
  const std::string dir = MakeTempDir("dns");
  const int prefill_port = 17702, decode_port = 17704, router_grpc = 17700, router_http = 17701;
  Subprocess decode = StartOrDie({BinaryPath("dsv3-decode"), std::string("--model=") + kModel,
                                  absl::StrCat("--grpc_port=", decode_port), "--ucx_tls=tcp",
                                  "--ucx_net_devices=lo", "--ready_file=" + dir + "/decode.ready"},
                                 dir + "/decode.log");
  Subprocess prefill =
      StartOrDie({BinaryPath("dsv3-prefill"), std::string("--model=") + kModel,
                  absl::StrCat("--grpc_port=", prefill_port), "--ucx_tls=tcp",
                  "--ucx_net_devices=lo", "--ready_file=" + dir + "/prefill.ready"},
                 dir + "/prefill.log");
  ASSERT_TRUE(testing::WaitForReadyFile(dir + "/decode.ready", decode, absl::Seconds(30)).ok());
  ASSERT_TRUE(testing::WaitForReadyFile(dir + "/prefill.ready", prefill, absl::Seconds(30)).ok());
  // "localhost" resolves (here) to 127.0.0.1, where the workers listen.
  Subprocess router =
      StartOrDie({BinaryPath("dsv3-router"), absl::StrCat("--grpc_port=", router_grpc),
                  absl::StrCat("--http_port=", router_http),
                  absl::StrCat("--prefill_dns=localhost:", prefill_port),
                  absl::StrCat("--decode_dns=localhost:", decode_port), "--dns_interval=200ms",
                  "--ready_file=" + dir + "/router.ready"},
                 dir + "/router.log");
  ASSERT_TRUE(testing::WaitForReadyFile(dir + "/router.ready", router, absl::Seconds(30)).ok());
  const std::string prefill_address = absl::StrCat("127.0.0.1:", prefill_port);
  const std::string decode_address = absl::StrCat("127.0.0.1:", decode_port);
  ASSERT_TRUE(WaitForUp(router_http, prefill_address, 1, absl::Seconds(10))) << router.ReadLog();
  ASSERT_TRUE(WaitForUp(router_http, decode_address, 1, absl::Seconds(10))) << router.ReadLog();
  grpc::Status status = Generate(absl::StrCat("127.0.0.1:", router_grpc));
  EXPECT_TRUE(status.ok()) << status.error_message();

  // A worker that stops answering is taken out within 2 s, and put back when it answers.
  // Without a prefill worker the router cannot serve, so it is not ready (the decode worker
  // up alone is not enough), and ready again once the prefill worker is back.
  EXPECT_TRUE(WaitForReady(router_http, 200, absl::Seconds(5)));
  kill(prefill.pid(), SIGSTOP);
  EXPECT_TRUE(WaitForUp(router_http, prefill_address, 0, absl::Seconds(2)));
  EXPECT_TRUE(WaitForReady(router_http, 503, absl::Seconds(5)));
  status = Generate(absl::StrCat("127.0.0.1:", router_grpc));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  kill(prefill.pid(), SIGCONT);
  EXPECT_TRUE(WaitForUp(router_http, prefill_address, 1, absl::Seconds(5)));
  EXPECT_TRUE(WaitForReady(router_http, 200, absl::Seconds(5)));
  status = Generate(absl::StrCat("127.0.0.1:", router_grpc));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(router.ReadLog(), HasSubstr("watching prefill worker " + prefill_address));

  for (Subprocess* p : {&router, &prefill, &decode}) p->Signal(SIGTERM);
  for (Subprocess* p : {&router, &prefill, &decode}) {
    auto code = p->Wait(absl::Seconds(15));
    EXPECT_TRUE(code.ok() && *code == 0);
  }
}

}  // namespace
}  // namespace dsv3
