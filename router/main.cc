// dsv3-router: the public entry point (gRPC dsv3.v1.Inference and the OpenAI-compatible
// HTTP API), tokenizer and chat template, worker discovery and choice, streaming.

#include "common/server_main.h"
#include "dsv3/v1/inference.grpc.pb.h"

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "router",
      "dsv3-router: public gRPC (dsv3.v1.Inference) and OpenAI-compatible HTTP API.\n"
      "usage: dsv3-router [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        dsv3::ServerParts parts;
        // The Inference contract is served; its calls answer UNIMPLEMENTED until the
        // serving path lands (issue: disaggregated serving).
        parts.services.push_back(std::make_unique<dsv3::v1::Inference::Service>());
        return parts;
      });
}
