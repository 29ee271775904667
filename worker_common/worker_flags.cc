#include "worker_common/worker_flags.h"

#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"
#include "worker_common/colocated_experts.h"

ABSL_FLAG(int, kv_blocks, 512, "KV pool size in blocks (per layer).");
ABSL_FLAG(int, kv_block_size, 64, "Tokens per KV block.");
ABSL_FLAG(bool, prefix_cache, true,
          "Keep the KV of full blocks after their request ends, named by their content, and "
          "reuse it for prompts that begin with them (evicted least recently used when a "
          "request needs the room).");
ABSL_FLAG(int, prefix_cache_max_blocks, 0,
          "Most KV blocks the prefix cache keeps that no request holds; 0: any block of the "
          "pool not in use.");

namespace dsv3::worker {

absl::StatusOr<WorkerResources> LoadWorkerResourcesFromFlags(const std::string& role) {
  WorkerResources r;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const RemoteExpertsOptions remote =
      RemoteExpertsOptionsFromFlags(absl::StrCat(role, "@", host, ":", getpid()));
  engine::LoadOptions load;
  if (RemoteExpertsConfigured(remote)) load.role = engine::LoadRole::kAttentionSide;
  DSV3_ASSIGN_OR_RETURN(r.model, LoadModelFromFlags(load));
  transport::UcxOptions ucx_options = UcxOptionsFromFlags();
  ucx_options.on_worker_replaced = [model = ModelNameFromFlags()](uint64_t) {
    Metrics().ucx_worker_replacements.WithLabels({model}).Increment();
  };
  DSV3_ASSIGN_OR_RETURN(r.ucx, transport::UcxContext::Create(ucx_options));
  DSV3_LOG(INFO) << "UCX transports: "
                 << (ucx_options.transports.empty() ? "UCX's default" : ucx_options.transports)
                 << (ucx_options.net_devices.empty() ? "" : ", devices " + ucx_options.net_devices)
                 << ", peer error handling " << (ucx_options.peer_error_handling ? "on" : "off");
  if (RemoteExpertsConfigured(remote)) {
    DSV3_ASSIGN_OR_RETURN(auto experts,
                          RemoteExpertExecutor::Create(r.model->config(), *r.ucx, remote));
    DSV3_LOG(INFO) << "routed experts run on expert workers; waiting until they hold every "
                      "expert";
    DSV3_RETURN_IF_ERROR(experts->WaitUntilReady(absl::Now() + absl::GetFlag(FLAGS_expert_wait)));
    DSV3_LOG(INFO) << "expert workers ready (placement version " << experts->placement_version()
                   << ")";
    r.experts = std::move(experts);
  } else if (r.model->config().n_routed_experts > 0) {
    r.experts = std::make_shared<ColocatedExpertExecutor>(*r.model);
  }
  if (r.experts != nullptr) r.model->set_expert_executor(r.experts.get());
  return r;
}

engine::KvCacheLayout KvLayoutFromFlags(const engine::Model& model) {
  return model.KvLayout(absl::GetFlag(FLAGS_kv_blocks), absl::GetFlag(FLAGS_kv_block_size));
}

}  // namespace dsv3::worker
