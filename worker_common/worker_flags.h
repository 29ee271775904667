#ifndef DSV3_WORKER_COMMON_WORKER_FLAGS_H_
#define DSV3_WORKER_COMMON_WORKER_FLAGS_H_

// What every attention worker (prefill, decode) starts from: the process flags (model, UCX;
// process_flags.h), the KV pool flags, and where its routed experts run (in this process,
// or on expert workers: remote_experts.h).

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "engine/model.h"
#include "transport/ucx/ucx_context.h"
#include "worker_common/process_flags.h"
#include "worker_common/remote_experts.h"

ABSL_DECLARE_FLAG(int, kv_blocks);
ABSL_DECLARE_FLAG(int, kv_block_size);
ABSL_DECLARE_FLAG(bool, prefix_cache);
ABSL_DECLARE_FLAG(int, prefix_cache_max_blocks);

namespace dsv3::worker {

// What an attention worker serves with. Keep them alive in this order of destruction:
// model, experts, ucx.
struct WorkerResources {
  std::shared_ptr<engine::Model> model;
  // Where the routed experts run: expert workers (RemoteExpertExecutor; the model then holds
  // no routed experts) or this process (ColocatedExpertExecutor).
  std::shared_ptr<engine::RoutedExpertExecutor> experts;
  std::shared_ptr<transport::UcxContext> ucx;
};
// Loads the model and UCX from the flags; with --expert_workers/--expert_dns, only the
// attention side of the model, joined to the expert workers (waits up to --expert_wait for
// them to hold every expert). `role` names this worker to them ("prefill", "decode").
absl::StatusOr<WorkerResources> LoadWorkerResourcesFromFlags(const std::string& role);
// The KV pool layout of --kv_blocks and --kv_block_size for `model`.
engine::KvCacheLayout KvLayoutFromFlags(const engine::Model& model);

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_WORKER_FLAGS_H_
