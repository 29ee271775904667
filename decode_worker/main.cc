// dsv3-decode: holds the paged latent KV pool, batches decode steps continuously and streams tokens.

#include "common/server_main.h"
#include "dsv3/v1/worker.grpc.pb.h"

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "decode",
      "dsv3-decode: holds the paged latent KV pool, batches decode steps continuously and streams tokens.\n"
      "usage: dsv3-decode [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        dsv3::ServerParts parts;
        // The Worker contract is served; its calls answer UNIMPLEMENTED until the
        // serving path lands (issue: disaggregated serving).
        parts.services.push_back(std::make_unique<dsv3::v1::Worker::Service>());
        return parts;
      });
}
