#ifndef DSV3_ROUTER_ROUTER_BACKEND_H_
#define DSV3_ROUTER_ROUTER_BACKEND_H_

// The router's InferenceBackend: validates a request, renders the chat template and
// tokenizes, then runs each of its n completions (CompletionRun) on the prefill and decode
// workers, and merges their responses for the front end.

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "router/delayed_tasks.h"
#include "router/generation_config.h"
#include "router/in_flight_requests.h"
#include "router/inference_backend.h"
#include "router/live_count.h"
#include "router/prompt_encoder.h"
#include "router/worker_registry.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::router {

struct RouterBackendOptions {
  std::string model_name;  // "" = the name the workers report
  int32_t default_max_tokens = 256;
  absl::Duration default_timeout = absl::Minutes(10);
  // Longer deadlines (timeout_ms or the gRPC deadline) are cut to this.
  absl::Duration max_timeout = absl::Hours(1);
  int max_n = 4;
  int max_stop_strings = 16;
  // CompletionPlan::decode_prefill_max_tokens (conditional disaggregation); 0: never.
  int32_t decode_prefill_max_tokens = 0;
  // CompletionPlan::migration_limit.
  int migration_limit = 3;
  // Tool-call format of the model's output: "auto" (by model type), "deepseek_v3", "none".
  std::string tool_call_parser = "auto";
  // Reasoning format of chat output (router/reasoning/): "deepseek_r1" or "none".
  std::string reasoning_parser = "none";
  // The checkpoint's sampling defaults (ModelInfo.default_*), for the OpenAI API.
  GenerationDefaults generation_defaults;
};

class RouterBackend : public InferenceBackend {
 public:
  // `tokenizer` may be null: the model is then served on token ids alone.
  RouterBackend(RouterBackendOptions options, WorkerRegistry& workers,
                std::unique_ptr<tokenizer::Tokenizer> tokenizer);

  absl::StatusOr<std::shared_ptr<GenerateHandle>> Generate(
      const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) override;
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) override;
  v1::ListModelsResponse ListModels() override;
  absl::StatusOr<v1::ModelInfo> GetModelInfo(const std::string& model) override;
  std::string TokenText(const std::string& model, int32_t token_id) override;

  // Whether the router can serve: it sees prefill and decode workers for a model.
  bool Ready();
  // On SIGTERM: refuses new requests (UNAVAILABLE) and lets those in flight run until
  // `deadline`, then ends them with UNAVAILABLE. Returns how many it ended so.
  int Drain(absl::Time deadline);

 private:
  absl::StatusOr<std::shared_ptr<GenerateHandle>> StartGenerate(
      const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer);
  absl::StatusOr<v1::WorkerInfo> ServedModel(const std::string& requested) const;

  const RouterBackendOptions options_;
  WorkerRegistry& workers_;
  InFlightRequests in_flight_;
  const std::shared_ptr<LiveCount> live_runs_ = std::make_shared<LiveCount>();
  DelayedTasks delayed_;  // requests waiting for KV capacity
  const PromptEncoder prompts_;
  const tokenizer::Tokenizer* const tokenizer_;  // prompts_'s; null without one
  const int64_t created_unix_seconds_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_ROUTER_BACKEND_H_
