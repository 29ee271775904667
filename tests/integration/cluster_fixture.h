#ifndef DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
#define DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_

// A running `dsv3 cluster` for integration tests: started as a user would start it, its
// processes read from the status file, stopped with SIGINT (checked to exit 0) when
// destroyed.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>

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
  httplib::Client Http() const;
  const std::string& dir() const { return dir_; }

 private:
  Cluster() = default;
  std::string dir_;
  std::optional<Subprocess> process_;
  std::vector<ClusterProc> procs_;
};

// Free KV blocks a decode worker reports on its WatchLoad stream (-1: no answer).
int DecodeFreeBlocks(const std::string& decode_grpc_address);

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
