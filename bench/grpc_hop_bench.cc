// One gRPC hop between two processes, open against mutual TLS, in one run (issue 16: what a
// hop costs with TLS, apart from everything else a request does).
//
//   grpc_hop_bench [--rounds 3] [--concurrency 1,16,256] [--seconds 3]
//
// Per round, per concurrency, each configuration in turn (open, then mtls): a server process
// (the cluster's server credentials and keepalive, a callback service that echoes) and a client
// process (ClusterChannel, the channel every process of the cluster dials with) that keeps
// `concurrency` unary calls of one 64-byte message in flight for `seconds` after a warm-up. The
// mTLS certificates are a throwaway CA's (common/certificate_authority.h), as `dsv3 cluster --tls`
// makes them. Prints the round trip's p50/p99 and calls per second, and the median of the
// rounds.

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/kv_transfer_bench_proc.h"
#include "common/certificate_authority.h"
#include "common/grpc_channel.h"
#include "common/status_macros.h"
#include "common/tls_config.h"

ABSL_FLAG(std::string, role, "driver", "driver (default), or server / client (internal)");
ABSL_FLAG(int, rounds, 3, "rounds; each runs every concurrency, open then mtls");
ABSL_FLAG(std::string, concurrency, "1,16,256", "calls in flight, comma separated");
ABSL_FLAG(double, seconds, 3, "measured seconds per configuration (after 0.5 s of warm-up)");
ABSL_FLAG(std::string, target, "", "client: host:port of the server");
ABSL_FLAG(int, in_flight, 1, "client: calls in flight");
ABSL_FLAG(int, pause_us, 0,
          "pause between one call's answer and the next call (0: back to back); sparse calls "
          "meet idle threads, as a request's control calls do in a cluster at low load");

namespace dsv3::bench {
namespace {

constexpr char kMethod[] = "/dsv3.bench.Hop/Echo";

// Answers every call with the message it got, on gRPC's callback threads (as the workers'
// services do).
class EchoService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() { StartRead(&message_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer message_;
    };
    return new Reactor;
  }
};

int RunServer() {
  const TlsConfig tls = TlsFromFlags(/*internal_api=*/true);
  EchoService echo;
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&echo);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", GrpcServerCredentials(tls), &port);
  ConfigureServerKeepalive(builder, KeepaliveFromFlags());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return 1;
  std::printf("READY %d\n", port);
  std::fflush(stdout);
  char line[16];
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
  }
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  return 0;
}

// Keeps `in_flight` calls going; records the round trips that start after `measure_from`.
class CallLoops {
 public:
  CallLoops(std::shared_ptr<grpc::Channel> channel, absl::Time measure_from, absl::Time end)
      : stub_(std::move(channel)), measure_from_(measure_from), end_(end) {}

  void Start(int in_flight) {
    {
      absl::MutexLock lock(&mu_);
      running_ = in_flight;
    }
    // Never under mu_: gRPC may run a callback on the thread that starts the call.
    for (int i = 0; i < in_flight; ++i) Call();
  }
  // The round trips in microseconds, and the calls that failed.
  std::vector<double> Wait(int64_t* failures) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &running_));
    *failures = failures_;
    return std::move(rtts_us_);
  }

 private:
  struct Call_ {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
    absl::Time start;
  };
  void Call() {
    auto* call = new Call_;
    // 64 bytes: about a worker's small control message (gRPC refuses an empty buffer).
    grpc::Slice payload(std::string(64, 'x'));
    call->request = grpc::ByteBuffer(&payload, 1);
    call->start = absl::Now();
    call->context.set_deadline(absl::ToChronoTime(call->start + absl::Seconds(10)));
    stub_.UnaryCall(&call->context, kMethod, grpc::StubOptions(), &call->request, &call->response,
                    [this, call](grpc::Status status) { Done(call, status); });
  }
  void Done(Call_* call, const grpc::Status& status) {
    const absl::Time now = absl::Now();
    bool again;
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok()) ++failures_;
      if (status.ok() && call->start >= measure_from_) {
        rtts_us_.push_back(absl::ToDoubleMicroseconds(now - call->start));
      }
      again = now < end_;
      if (!again) --running_;
    }
    delete call;
    if (again && pause_ > absl::ZeroDuration()) absl::SleepFor(pause_);
    if (again) Call();
  }

  grpc::GenericStub stub_;
  const absl::Time measure_from_;
  const absl::Time end_;
  const absl::Duration pause_ = absl::Microseconds(absl::GetFlag(FLAGS_pause_us));
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> rtts_us_ ABSL_GUARDED_BY(mu_);
};

double Quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

int RunClient() {
  std::shared_ptr<grpc::Channel> channel = ClusterChannel(absl::GetFlag(FLAGS_target));
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) return 1;
  const absl::Time from = absl::Now() + absl::Milliseconds(500);
  const absl::Duration measured = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  CallLoops loops(channel, from, from + measured);
  loops.Start(absl::GetFlag(FLAGS_in_flight));
  int64_t failures = 0;
  std::vector<double> rtts = loops.Wait(&failures);
  std::printf("RESULT %.1f %.1f %.0f %lld\n", Quantile(rtts, 0.5), Quantile(rtts, 0.99),
              static_cast<double>(rtts.size()) / absl::ToDoubleSeconds(measured),
              static_cast<long long>(failures));
  return 0;
}

struct Figures {
  double p50_us = 0, p99_us = 0, calls_per_s = 0;
  int64_t failures = 0;
};

absl::StatusOr<Figures> RunOne(const std::vector<std::string>& tls_flags, int in_flight) {
  std::vector<std::string> server_argv = {"/proc/self/exe", "--role=server"};
  server_argv.insert(server_argv.end(), tls_flags.begin(), tls_flags.end());
  DSV3_ASSIGN_OR_RETURN(ChildProcess server, ChildProcess::Start(server_argv, {}));
  DSV3_ASSIGN_OR_RETURN(std::string ready, server.ReadLine(absl::Now() + absl::Seconds(20)));
  std::vector<std::string> w = absl::StrSplit(ready, ' ');
  if (w.size() != 2 || w[0] != "READY") return absl::InternalError("server said: " + ready);
  std::vector<std::string> client_argv = {
      "/proc/self/exe",
      "--role=client",
      "--target=127.0.0.1:" + w[1],
      absl::StrCat("--in_flight=", in_flight),
      absl::StrCat("--seconds=", absl::GetFlag(FLAGS_seconds)),
      absl::StrCat("--pause_us=", absl::GetFlag(FLAGS_pause_us))};
  client_argv.insert(client_argv.end(), tls_flags.begin(), tls_flags.end());
  DSV3_ASSIGN_OR_RETURN(ChildProcess client, ChildProcess::Start(client_argv, {}));
  DSV3_ASSIGN_OR_RETURN(std::string out, client.ReadLine(absl::Now() + absl::Seconds(60)));
  server.CloseStdin();
  std::vector<std::string> r = absl::StrSplit(out, ' ');
  Figures f;
  if (r.size() != 5 || r[0] != "RESULT" || !absl::SimpleAtod(r[1], &f.p50_us) ||
      !absl::SimpleAtod(r[2], &f.p99_us) || !absl::SimpleAtod(r[3], &f.calls_per_s) ||
      !absl::SimpleAtoi(r[4], &f.failures)) {
    return absl::InternalError("client said: " + out);
  }
  return f;
}

absl::Status RunDriver() {
  char dir_template[] = "/tmp/grpc-hop-bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp");
  const std::string dir = dir_template;
  CertificateSpec ca_spec;
  ca_spec.common_name = "grpc_hop_bench CA";
  DSV3_ASSIGN_OR_RETURN(PemCertificate ca, MakeCertificateAuthority(ca_spec));
  CertificateSpec spec;
  spec.common_name = "grpc-hop-bench";
  spec.ip_addresses = {"127.0.0.1"};
  DSV3_ASSIGN_OR_RETURN(PemCertificate cert, IssueCertificate(ca, spec));
  DSV3_RETURN_IF_ERROR(WritePemFile(dir + "/ca.pem", ca.cert));
  DSV3_RETURN_IF_ERROR(WritePemFile(dir + "/cert.pem", cert.cert));
  DSV3_RETURN_IF_ERROR(WritePemFile(dir + "/cert.key", cert.key));
  const std::map<std::string, std::vector<std::string>> configs = {
      {"open", {}},
      {"mtls",
       {"--tls_ca=" + dir + "/ca.pem", "--tls_cert=" + dir + "/cert.pem",
        "--tls_key=" + dir + "/cert.key"}}};
  std::vector<int> levels;
  for (absl::string_view c : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n) || n < 1) return absl::InvalidArgumentError("bad --concurrency");
    levels.push_back(n);
  }
  // (concurrency, config) -> p50 of each round, for the medians.
  std::map<std::pair<int, std::string>, std::vector<double>> p50s;
  std::printf("%-6s %-11s %-5s %10s %10s %10s %8s\n", "round", "concurrency", "conf", "p50 us",
              "p99 us", "calls/s", "failed");
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    for (int c : levels) {
      for (const char* name : {"open", "mtls"}) {
        DSV3_ASSIGN_OR_RETURN(Figures f, RunOne(configs.at(name), c));
        std::printf("%-6d %-11d %-5s %10.1f %10.1f %10.0f %8lld\n", round, c, name, f.p50_us,
                    f.p99_us, f.calls_per_s, static_cast<long long>(f.failures));
        std::fflush(stdout);
        p50s[{c, name}].push_back(f.p50_us);
      }
    }
  }
  std::printf("\nmedian of the rounds' p50 (us): concurrency, open, mtls, mtls - open\n");
  for (int c : levels) {
    const double open = Quantile(p50s[{c, "open"}], 0.5);
    const double mtls = Quantile(p50s[{c, "mtls"}], 0.5);
    std::printf("%d %.1f %.1f %+.1f\n", c, open, mtls, mtls - open);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsv3::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "server") return dsv3::bench::RunServer();
  if (role == "client") return dsv3::bench::RunClient();
  const absl::Status st = dsv3::bench::RunDriver();
  if (!st.ok()) {
    std::fprintf(stderr, "grpc_hop_bench: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
