#ifndef DSV3_WORKER_COMMON_WORKER_FLAGS_H_
#define DSV3_WORKER_COMMON_WORKER_FLAGS_H_

// Flags every attention worker (prefill, decode) has: the model, the KV pool, UCX.

#include <memory>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model.h"
#include "transport/ucx/ucx_context.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, model_name);
ABSL_DECLARE_FLAG(int, kv_blocks);
ABSL_DECLARE_FLAG(int, kv_block_size);
ABSL_DECLARE_FLAG(std::string, ucx_tls);
ABSL_DECLARE_FLAG(std::string, ucx_net_devices);

namespace dsv3::worker {

// Loads --model (HF directory), with its MTP layer when present.
absl::StatusOr<std::unique_ptr<engine::Model>> LoadModelFromFlags();

// What an attention worker serves with: its model and its UCX context (from the flags).
struct WorkerResources {
  std::shared_ptr<engine::Model> model;
  std::shared_ptr<transport::UcxContext> ucx;
};
absl::StatusOr<WorkerResources> LoadWorkerResourcesFromFlags();
// The KV pool layout of --kv_blocks and --kv_block_size for `model`.
engine::KvCacheLayout KvLayoutFromFlags(const engine::Model& model);
// The name the model is served as: --model_name, else the directory's base name.
std::string ModelNameFromFlags();
transport::UcxOptions UcxOptionsFromFlags();

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_WORKER_FLAGS_H_
