// dsv3-expert: holds a shard (plus replicas) of the routed experts of every MoE layer and
// answers dispatch/combine from any attention worker.

#include <memory>

#include "absl/flags/flag.h"
#include "common/logging.h"
#include "common/process_metrics.h"
#include "common/server_main.h"
#include "common/status_macros.h"
#include "expert_worker/expert_compute_loop.h"
#include "expert_worker/expert_service.h"
#include "expert_worker/expert_shard.h"
#include "transport/nccl/nccl_support.h"
#include "transport/ucx/ucx_expert_server.h"
#include "worker_common/process_flags.h"

ABSL_FLAG(int, num_shards, 1, "Expert workers in the cluster (the default placement's size).");
ABSL_FLAG(int, shard_index, 0, "This worker's index in [0, --num_shards).");

int main(int argc, char** argv) {
  dsv3::expert::ExpertService* service = nullptr;
  dsv3::expert::ExpertComputeLoop* loop = nullptr;
  return dsv3::RunServerMain(
      argc, argv, "expert",
      "dsv3-expert: routed-expert worker (dispatch/combine over UCX; NCCL on GPU builds).\n"
      "usage: dsv3-expert --model DIR --num_shards N --shard_index I [--flags]",
      [&]() -> absl::StatusOr<dsv3::ServerParts> {
        DSV3_LOG(INFO) << "expert all-to-all backends: UCX, " << dsv3::transport::NcclDescription();
        const std::string dir = absl::GetFlag(FLAGS_model);
        if (dir.empty()) return absl::InvalidArgumentError("--model is required");
        dsv3::worker::ConfigureEngineFromFlags();
        DSV3_ASSIGN_OR_RETURN(auto weights, dsv3::worker::WeightFormatFromFlags());
        DSV3_ASSIGN_OR_RETURN(
            auto shard, dsv3::expert::ExpertShard::Load(dir, absl::GetFlag(FLAGS_shard_index),
                                                        absl::GetFlag(FLAGS_num_shards), weights,
                                                        absl::GetFlag(FLAGS_bf16_activations),
                                                        absl::GetFlag(FLAGS_batch_invariant)));
        const auto holding = shard->current();
        DSV3_LOG(INFO) << "expert shard " << absl::GetFlag(FLAGS_shard_index) << "/"
                       << absl::GetFlag(FLAGS_num_shards) << ": " << holding->experts_held
                       << " experts, " << holding->expert_bytes << " bytes of weights, resident "
                       << dsv3::ResidentMemoryBytes() << " bytes";
        DSV3_ASSIGN_OR_RETURN(
            std::shared_ptr<dsv3::transport::UcxContext> context,
            dsv3::transport::UcxContext::Create(dsv3::worker::UcxOptionsFromFlags()));
        DSV3_ASSIGN_OR_RETURN(
            std::shared_ptr<dsv3::transport::UcxExpertServer> transport_server,
            dsv3::transport::UcxExpertServer::Create(*context, absl::GetFlag(FLAGS_shard_index)));
        std::shared_ptr<dsv3::expert::ExpertShard> shared_shard = std::move(shard);
        auto compute =
            std::make_shared<dsv3::expert::ExpertComputeLoop>(*shared_shard, *transport_server);
        loop = compute.get();
        auto svc = std::make_unique<dsv3::expert::ExpertService>(*shared_shard, *context,
                                                                 *transport_server, *compute);
        service = svc.get();
        dsv3::ServerParts parts;
        // Destroyed first to last: the loop before the server it takes from, the server
        // before the UCX context, the shard last.
        parts.keep_alive.push_back(compute);
        parts.keep_alive.push_back(transport_server);
        parts.keep_alive.push_back(context);
        parts.keep_alive.push_back(shared_shard);
        parts.services.push_back(std::move(svc));
        parts.on_draining = [&] { service->Drain(); };
        parts.on_stopped = [&] { loop->Stop(); };
        return parts;
      });
}
