// dsv3-prefill: runs prompt forward passes and pushes the latent KV cache over UCX to a decode worker.

#include "common/server_main.h"
#include "dsv3/v1/worker.grpc.pb.h"

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "prefill",
      "dsv3-prefill: runs prompt forward passes and pushes the latent KV cache over UCX to a decode worker.\n"
      "usage: dsv3-prefill [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        dsv3::ServerParts parts;
        // The Worker contract is served; its calls answer UNIMPLEMENTED until the
        // serving path lands (issue: disaggregated serving).
        parts.services.push_back(std::make_unique<dsv3::v1::Worker::Service>());
        return parts;
      });
}
