#include "worker_common/process_flags.h"

#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/thread_pool.h"

ABSL_FLAG(std::string, model, "", "Model directory (HF layout: config.json, safetensors).");
ABSL_FLAG(std::string, model_name, "", "Name the model is served as (default: directory name).");
ABSL_FLAG(std::string, weights, "auto",
          "Weight format in memory: auto (as the checkpoint stores them), int8, int4 or int8-head "
          "(quantized at load from BF16/FP8 checkpoints; engine/weight_format.h). Part of the "
          "model identity: every prefill, decode and expert worker of a cluster must agree.");
ABSL_FLAG(bool, bf16_activations, dsv3::engine::LoadOptions{}.bf16_activations,
          "BF16 projections multiply activations rounded to bf16 on CPUs with AVX512_BF16: one "
          "vdpbf16ps per 32 columns, as BF16 inference in PyTorch and llama.cpp, by one kernel at "
          "every batch size, and a BF16 model's prefill attends as decode does: a request's tokens "
          "do not depend on what shares its batches, nor on a prefix cache or a move to another "
          "decode worker. false splits them into two bf16 parts from 2 rows on (f32-level "
          "products, within 1e-4 of the reference's logits; slower at big batches and prefill). "
          "FP8 projections round their activations to bf16 too, and past 16 rows their "
          "weights, as DeepSeek's reference computes FP8 by default (false: f32 "
          "products). "
          "Part of the model identity, as --weights (README).");
ABSL_FLAG(bool, batch_invariant, false,
          "A request's tokens do not depend, to the bit, on what shares its decode steps or "
          "prefill: every projection keeps one kernel at every row count (int8/int4: no bf16 "
          "tiles above 16-32 rows; FP8: no tiled GEMM; BF16 with split activations: the bf16 "
          "kernel at batch 1 and past 64 rows), and prefill attends as decode does. Slower "
          "where those kernels win (README). Part of the model identity, as --weights.");
ABSL_FLAG(std::string, ucx_tls, "",
          "UCX transports (UCX_TLS), e.g. tcp or posix,cma,self; empty: UCX's default.");
ABSL_FLAG(std::string, ucx_net_devices, "", "UCX network devices (UCX_NET_DEVICES), e.g. lo.");

ABSL_FLAG(absl::Duration, engine_idle_spin, absl::Milliseconds(2),
          "How long the engine's idle threads spin for the next parallel job before sleeping. "
          "Short (e.g. 100us) when processes share cores and wait on each other (a whole "
          "cluster on one machine, expert workers beside attention workers).");

ABSL_FLAG(int, engine_compute_nice, 0,
          "Niceness (0..19) of the threads that run the model, so gRPC, UCX progress and "
          "other processes' control threads preempt them on shared cores (e.g. 10 when the "
          "whole cluster runs on one machine).");

namespace dsv3::worker {

void ConfigureEngineFromFlags() {
  engine::ThreadPool::SetComputeNice(absl::GetFlag(FLAGS_engine_compute_nice));
  engine::ThreadPool::SetIdleSpin(
      std::chrono::microseconds(absl::ToInt64Microseconds(absl::GetFlag(FLAGS_engine_idle_spin))));
}

absl::StatusOr<engine::WeightFormat> WeightFormatFromFlags() {
  return engine::ParseWeightFormat(absl::GetFlag(FLAGS_weights));
}

absl::StatusOr<std::unique_ptr<engine::Model>> LoadModelFromFlags(
    const engine::LoadOptions& options) {
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required");
  ConfigureEngineFromFlags();
  DSV3_ASSIGN_OR_RETURN(engine::WeightFormat weights, WeightFormatFromFlags());
  engine::LoadOptions load = options;
  load.weights = weights;
  load.bf16_activations = absl::GetFlag(FLAGS_bf16_activations);
  load.batch_invariant = absl::GetFlag(FLAGS_batch_invariant);
  DSV3_LOG(INFO) << "loading model " << dir << " (weights: " << engine::WeightFormatName(weights)
                 << ")";
  return engine::Model::Load(dir, load);
}

std::string ModelNameFromFlags() {
  std::string name = absl::GetFlag(FLAGS_model_name);
  if (!name.empty()) return name;
  std::string dir = absl::GetFlag(FLAGS_model);
  while (!dir.empty() && dir.back() == '/') dir.pop_back();
  std::vector<std::string> parts = absl::StrSplit(dir, '/');
  return parts.empty() ? "model" : parts.back();
}

transport::UcxOptions UcxOptionsFromFlags() {
  transport::UcxOptions options;
  options.transports = absl::GetFlag(FLAGS_ucx_tls);
  options.net_devices = absl::GetFlag(FLAGS_ucx_net_devices);
  // Shared-memory transports cannot report a dead peer in UCX 1.13; with them, transfer
  // deadlines and gRPC health notice failures instead.
  const bool shm_only = !options.transports.empty() &&
                        options.transports.find("tcp") == std::string::npos &&
                        options.transports.find("rc") == std::string::npos &&
                        options.transports.find("ud") == std::string::npos &&
                        options.transports.find("dc") == std::string::npos;
  options.peer_error_handling = !shm_only;
  return options;
}

}  // namespace dsv3::worker
