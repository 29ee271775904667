// dsv3-expert: holds a shard (plus replicas) of the routed experts of every MoE layer and
// answers dispatch/combine from any attention worker.

#include "common/logging.h"
#include "common/server_main.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "transport/nccl_support.h"

int main(int argc, char** argv) {
  return dsv3::RunServerMain(
      argc, argv, "expert",
      "dsv3-expert: routed-expert worker (dispatch/combine over UCX or NCCL).\n"
      "usage: dsv3-expert [--flags]",
      []() -> absl::StatusOr<dsv3::ServerParts> {
        DSV3_LOG(INFO) << "expert all-to-all backends: in-process, UCX, "
                       << dsv3::transport::NcclDescription();
        dsv3::ServerParts parts;
        // The Expert contract is served; its calls answer UNIMPLEMENTED until the
        // expert path lands (issue: expert workers).
        parts.services.push_back(std::make_unique<dsv3::v1::Expert::Service>());
        return parts;
      });
}
