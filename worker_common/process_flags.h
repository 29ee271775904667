#ifndef DSV3_WORKER_COMMON_PROCESS_FLAGS_H_
#define DSV3_WORKER_COMMON_PROCESS_FLAGS_H_

// Flags of every process that holds model weights and speaks UCX (prefill, decode, expert):
// --model, --model_name, --weights, --bf16_activations, --batch_invariant, --ucx_tls,
// --ucx_net_devices.

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model.h"
#include "transport/ucx/ucx_context.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, model_name);
ABSL_DECLARE_FLAG(bool, bf16_activations);
ABSL_DECLARE_FLAG(bool, batch_invariant);
ABSL_DECLARE_FLAG(std::string, ucx_tls);
ABSL_DECLARE_FLAG(std::string, ucx_net_devices);
ABSL_DECLARE_FLAG(absl::Duration, engine_idle_spin);
ABSL_DECLARE_FLAG(int, engine_compute_nice);

namespace dsv3::worker {

// Applies the engine's process-wide settings (--engine_idle_spin, --engine_compute_nice)
// before a model loads.
void ConfigureEngineFromFlags();

// --weights (auto, int8, int4).
absl::StatusOr<engine::WeightFormat> WeightFormatFromFlags();

// Loads --model (HF directory) with `options` (by default everything, MTP included) in the
// --weights format, with --bf16_activations.
absl::StatusOr<std::unique_ptr<engine::Model>> LoadModelFromFlags(
    const engine::LoadOptions& options = {});
// The name the model is served as: --model_name, else the directory's base name.
std::string ModelNameFromFlags();
transport::UcxOptions UcxOptionsFromFlags();

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_PROCESS_FLAGS_H_
