#ifndef DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
#define DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_

// A running `dsv3 cluster` for integration tests: started as a user would start it, its
// processes read from the status file, stopped with SIGINT (checked to exit 0) when
// destroyed.

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "dsv3/v1/worker.pb.h"
#include "tests/support/subprocess.h"

namespace dsv3::testing {

struct ClusterProc {
  std::string role;
  int pid = 0;
  std::string grpc;
  std::string http;
};

class Cluster {
 public:
  // nullptr (and a test failure) when the cluster does not come up within 2 minutes.
  static std::unique_ptr<Cluster> Start(const std::string& model, int prefill, int decode,
                                        int port_base, int kv_blocks = 128,
                                        std::vector<std::string> extra = {});
  ~Cluster();

  // The index-th process with `role` ("router", "prefill", "decode").
  const ClusterProc& Get(const std::string& role, int index = 0) const;
  // Its gRPC (api "grpc") or HTTP ("http") address.
  std::string Address(const std::string& role, const std::string& api = "grpc") const;
  std::string router() const { return Get("router").grpc; }
  // A client of the router's HTTP API (OpenAI routes, /metrics).
  // HTTP (/metrics; the OpenAI API on the router) of the first process of `role`.
  httplib::Client Http(const std::string& role = "router", int index = 0) const;
  // How many processes have `role`.
  int Count(const std::string& role) const;
  const std::string& dir() const { return dir_; }
  // SIGKILL to `dsv3 cluster` itself, not its processes (as `kill -9` or an OOM kill would);
  // the destructor then has nothing to stop.
  void KillLauncher();

 private:
  Cluster() = default;
  std::string dir_;
  std::optional<Subprocess> process_;
  std::vector<ClusterProc> procs_;
};

// Whether process `pid` (not necessarily this one's child) has ended: gone, or a zombie,
// which holds no ports any more.
bool ProcessEnded(int pid);
// Polls ProcessEnded for up to `timeout`.
bool WaitForProcessEnd(int pid, absl::Duration timeout);

// The value of one sample (`series`: name and labels as /metrics prints them) summed over
// every process of `role` that exports it; -1 when none does.
double MetricSum(const Cluster& cluster, const std::string& role, const std::string& series);

// The first report on a worker's WatchLoad stream (nullopt: no answer within 5 s).
std::optional<v1::LoadReport> WorkerLoad(const std::string& worker_grpc_address);
// Free KV blocks a decode worker reports on its WatchLoad stream (-1: no answer).
int DecodeFreeBlocks(const std::string& decode_grpc_address);
// Polls until the decode worker reports `expected` free blocks; false at the timeout.
bool WaitForFreeBlocks(const std::string& decode_grpc_address, int expected,
                       absl::Duration timeout);

// The golden checkpoint most cluster tests serve.
inline constexpr char kGolden[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";

// Token ids in whitespace-separated text (what `dsv3 generate`/`complete` print).
std::vector<int32_t> ParseIds(const std::string& line);
// `dsv3 generate`: the single-process reference output.
std::vector<int32_t> Generate(const std::string& model, const std::vector<int32_t>& prompt,
                              int max_tokens, const std::string& flags = "");

// One Inference.Generate stream read to its end.
struct GrpcResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};
GrpcResult GenerateGrpc(const std::string& router, const v1::GenerateRequest& request,
                        int deadline_s = 60);
// Greedy over token ids, ignoring EOS.
v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, int max_tokens);

// The prompts and greedy continuations of a golden case (golden.json).
struct Golden {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};
std::vector<Golden> GoldenCases(const std::string& dir = kGolden);

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
