#include "router/router_backend.h"

#include <atomic>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/kv_block_hash.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "router/completion_run.h"
#include "router/output_plan.h"

namespace dsv3::router {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

constexpr size_t kMaxStopBytes = 1024;
constexpr int kMaxStopTokenIds = 64;
constexpr int kMaxLogitBias = 300;  // OpenAI's limit

// Resolves the wire's "0 means default" and checks ranges.
absl::Status ResolveSampling(v1::SamplingParams& s, int64_t prompt_tokens, int64_t context,
                             int64_t vocab_size, int32_t default_max_tokens, int max_stops) {
  if (s.max_tokens() < 0) return Invalid("max_tokens must be >= 0");
  if (prompt_tokens >= context) {
    return Invalid(absl::StrCat("prompt of ", prompt_tokens,
                                " tokens does not fit the model context of ", context, " tokens"));
  }
  if (s.max_tokens() == 0) {
    s.set_max_tokens(
        static_cast<int32_t>(std::min<int64_t>(default_max_tokens, context - prompt_tokens)));
  }
  if (prompt_tokens + s.max_tokens() > context) {
    return Invalid(absl::StrCat("prompt (", prompt_tokens, " tokens) + max_tokens (",
                                s.max_tokens(), ") exceeds the model context of ", context,
                                " tokens"));
  }
  if (!(s.temperature() >= 0 && s.temperature() <= 2))
    return Invalid("temperature must be in [0, 2]");
  if (!(s.top_p() >= 0 && s.top_p() <= 1)) return Invalid("top_p must be in [0, 1]");
  if (s.top_k() < 0) return Invalid("top_k must be >= 0");
  if (!(s.min_p() >= 0 && s.min_p() <= 1)) return Invalid("min_p must be in [0, 1]");
  if (!(s.repetition_penalty() >= 0 && s.repetition_penalty() <= 2)) {
    return Invalid("repetition_penalty must be in (0, 2]");
  }
  if (!(s.presence_penalty() >= -2 && s.presence_penalty() <= 2)) {
    return Invalid("presence_penalty must be in [-2, 2]");
  }
  if (!(s.frequency_penalty() >= -2 && s.frequency_penalty() <= 2)) {
    return Invalid("frequency_penalty must be in [-2, 2]");
  }
  if (s.logprobs() < 0 || s.logprobs() > 20) return Invalid("logprobs must be in [0, 20]");
  if (s.stop_size() > max_stops)
    return Invalid(absl::StrCat("at most ", max_stops, " stop strings"));
  for (const auto& stop : s.stop()) {
    if (stop.empty()) return Invalid("stop strings must not be empty");
    // Each is searched for in the text after every token: its length costs every step.
    if (stop.size() > kMaxStopBytes) {
      return Invalid(absl::StrCat("stop strings are at most ", kMaxStopBytes, " bytes"));
    }
  }
  if (s.logit_bias_size() > kMaxLogitBias) {
    return Invalid(absl::StrCat("logit_bias holds at most ", kMaxLogitBias, " tokens"));
  }
  for (const auto& [token, bias] : s.logit_bias()) {
    if (token < 0 || token >= vocab_size) {
      return Invalid(
          absl::StrCat("logit_bias: token ", token, " is outside the vocabulary of ", vocab_size));
    }
    if (!(bias >= -100 && bias <= 100)) {
      return Invalid(
          absl::StrCat("logit_bias: the bias of token ", token, " must be in [-100, 100]"));
    }
  }
  if (s.stop_token_ids_size() > kMaxStopTokenIds) {
    return Invalid(absl::StrCat("at most ", kMaxStopTokenIds, " stop_token_ids"));
  }
  if (!s.has_seed() && s.temperature() > 0) {
    // One seed for the prefill and decode workers of this request.
    static thread_local std::mt19937_64 rng(std::random_device{}());
    s.set_seed(rng());
  }
  return absl::OkStatus();
}

// Merges the n completions of a request for the observer; OnDone once all are done (or at
// the first error, which cancels the others).
class RequestGroup : public GenerateHandle, public std::enable_shared_from_this<RequestGroup> {
 public:
  RequestGroup(std::shared_ptr<GenerateObserver> observer, int n, std::string model,
               std::string request_id, absl::Time arrival)
      : observer_(std::move(observer)),
        model_(std::move(model)),
        request_id_(std::move(request_id)),
        arrival_(arrival),
        remaining_(n) {}

  void Add(std::shared_ptr<CompletionRun> run) { runs_.push_back(std::move(run)); }

  void OnResponse(const v1::GenerateResponse& r) {
    absl::MutexLock lock(&mu_);
    if (!done_) observer_->OnResponse(r);
  }

  void OnRunDone(const absl::Status& status) {
    bool report = false;
    absl::Status final;
    {
      absl::MutexLock lock(&mu_);
      --remaining_;
      if (!status.ok() && first_error_.ok()) first_error_ = status;
      if (!done_ && (remaining_ == 0 || !status.ok())) {
        done_ = true;
        report = true;
        final = status.ok() ? first_error_ : status;
      }
    }
    if (!status.ok()) CancelRuns();
    if (report) Report(final);
  }

  void Cancel() override {
    bool report = false;
    {
      absl::MutexLock lock(&mu_);
      if (!done_) {
        done_ = true;
        report = true;
      }
    }
    CancelRuns();
    if (report) Report(absl::CancelledError("cancelled by the client"));
  }

 private:
  void Report(const absl::Status& status) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - arrival_);
    if (!status.ok() && !absl::IsCancelled(status)) {
      DSV3_LOG(WARNING).With("request_id", request_id_) << "request failed: " << status;
    } else {
      DSV3_LOG(DEBUG).With("request_id", request_id_)
          << "request done: " << StatusLabel(status.code()) << " in " << seconds << " s";
    }
    const ServingMetrics& m = Metrics();
    m.requests.WithLabels({model_, StatusLabel(status.code())}).Increment();
    m.e2e_latency_seconds.WithLabels({model_}).Observe(
        absl::ToDoubleSeconds(absl::Now() - arrival_));
    observer_->OnDone(status);
  }
  void CancelRuns() {
    for (auto& run : runs_) run->Cancel();
  }
  std::shared_ptr<GenerateObserver> observer_;
  const std::string model_;
  const std::string request_id_;
  const absl::Time arrival_;
  std::vector<std::shared_ptr<CompletionRun>> runs_;  // set before any run starts
  absl::Mutex mu_;
  int remaining_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

RouterBackend::RouterBackend(RouterBackendOptions options, WorkerRegistry& workers,
                             std::unique_ptr<tokenizer::Tokenizer> tokenizer)
    : options_(std::move(options)),
      workers_(workers),
      prompts_(std::move(tokenizer)),
      tokenizer_(prompts_.tokenizer()),
      created_unix_seconds_(absl::ToUnixSeconds(absl::Now())) {}

absl::StatusOr<v1::WorkerInfo> RouterBackend::ServedModel(const std::string& requested) const {
  std::optional<v1::WorkerInfo> info = workers_.ModelInfo();
  if (!info.has_value()) return absl::UnavailableError("no worker is up");
  const std::string name = options_.model_name.empty() ? info->model_name() : options_.model_name;
  if (!requested.empty() && requested != name) {
    return absl::NotFoundError(
        absl::StrCat("model '", requested, "' is not served here (", name, " is)"));
  }
  info->set_model_name(name);
  return *info;
}

absl::StatusOr<std::shared_ptr<GenerateHandle>> RouterBackend::Generate(
    const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) {
  absl::StatusOr<std::shared_ptr<GenerateHandle>> handle;
  if (absl::Status admitted = in_flight_.Admit(); !admitted.ok()) {
    handle = admitted;
  } else {
    uint64_t id = 0;
    handle = StartGenerate(request, in_flight_.Track(std::move(observer), &id));
    in_flight_.Started(id, handle.ok() ? *handle : nullptr);
  }
  if (!handle.ok()) {
    // Refused before it started: counted here (started requests count when they end).
    auto model = ServedModel("");
    Metrics()
        .requests
        .WithLabels({model.ok() ? model->model_name() : request.model(),
                     StatusLabel(handle.status().code())})
        .Increment();
  }
  return handle;
}

// Not before a request can be served: a prefill and a decode worker up (a router whose decode
// worker came up first answered its first requests "no prefill worker is up").
bool RouterBackend::Ready() { return workers_.Ready() && ListModels().models_size() > 0; }

int RouterBackend::Drain(absl::Time deadline) {
  const int cancelled = in_flight_.Drain(deadline);
  // The runs cancelled release their leases once their prefill calls end (a stalled prefill's
  // write grace is 3 s): wait for that before the process exits.
  if (!live_runs_->WaitForNone(absl::Seconds(5))) {
    DSV3_LOG(WARNING) << "exiting with requests whose decode leases are not yet released (they "
                         "expire on the decode worker)";
  }
  return cancelled;
}

absl::StatusOr<std::shared_ptr<GenerateHandle>> RouterBackend::StartGenerate(
    const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) {
  DSV3_ASSIGN_OR_RETURN(v1::WorkerInfo model, ServedModel(request.model()));
  DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, prompts_.Ids(request, nullptr));
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= model.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", prompt[i], " at position ", i,
                                                     " is outside the vocabulary of ",
                                                     model.vocab_size()));
    }
  }
  const int n = request.n() == 0 ? 1 : request.n();
  if (n < 1 || n > options_.max_n) {
    return absl::InvalidArgumentError(absl::StrCat("n must be in [1, ", options_.max_n, "]"));
  }
  auto plan = std::make_shared<CompletionPlan>();
  plan->request_id = request.request_id();
  if (plan->request_id.empty()) {
    // Every log line and worker call about the request carries an id.
    static std::atomic<uint64_t> counter{0};
    plan->request_id = absl::StrCat("req-", absl::ToUnixMicros(absl::Now()), "-",
                                    counter.fetch_add(1, std::memory_order_relaxed));
  }
  plan->prompt = std::move(prompt);
  plan->sampling = request.sampling();
  if (absl::Status s = ResolveSampling(plan->sampling, static_cast<int64_t>(plan->prompt.size()),
                                       model.max_position_embeddings(), model.vocab_size(),
                                       options_.default_max_tokens, options_.max_stop_strings);
      !s.ok()) {
    return s;
  }
  DSV3_ASSIGN_OR_RETURN(OutputPlan output,
                        PlanOutput(request, options_.tool_call_parser, model.model_type(),
                                   tokenizer_ != nullptr, &plan->sampling));
  plan->tool_calls = std::move(output.tool_calls);
  // A constrained output starts at its grammar: there is no thinking to split off.
  if (request.has_chat() && !plan->sampling.has_grammar()) {
    plan->reasoning_parser = options_.reasoning_parser;
  }
  if (!plan->sampling.ignore_eos() && tokenizer_ != nullptr && tokenizer_->eos_id().has_value()) {
    plan->eos_token_id = *tokenizer_->eos_id();
  }
  plan->return_text =
      (!request.has_return_text() || request.return_text()) && tokenizer_ != nullptr;
  plan->tokenizer = tokenizer_;
  plan->config_hash = model.config_hash();
  plan->arrival = absl::Now();
  plan->decode_prefill_max_tokens = options_.decode_prefill_max_tokens;
  plan->migration_limit = options_.migration_limit;
  if (model.prefix_cache()) {
    plan->kv_names =
        KvBlockHashes(KvCacheIdentityOf(model.config_hash(), model.kv_layout()), plan->prompt);
  }
  // No request holds the router's (and the workers') resources past --max_request_timeout,
  // whatever deadline its client set.
  const absl::Duration timeout =
      std::min(request.timeout_ms() > 0 ? absl::Milliseconds(request.timeout_ms())
                                        : options_.default_timeout,
               options_.max_timeout);
  plan->deadline = plan->arrival + timeout;

  plan->model_name = model.model_name();
  Metrics()
      .prompt_tokens.WithLabels({plan->model_name})
      .Increment(static_cast<double>(plan->prompt.size() * n));
  auto group = std::make_shared<RequestGroup>(std::move(observer), n, plan->model_name,
                                              plan->request_id, plan->arrival);
  std::vector<std::shared_ptr<CompletionRun>> runs;
  for (int i = 0; i < n; ++i) {
    std::shared_ptr<const CompletionPlan> run_plan = plan;
    if (n > 1 && plan->sampling.has_seed()) {
      // Distinct completions: each index draws its own stream.
      auto copy = std::make_shared<CompletionPlan>(*plan);
      copy->sampling.set_seed(plan->sampling.seed() + static_cast<uint64_t>(i));
      run_plan = copy;
    }
    // The group owns its runs; a run refers back to it weakly (a strong reference would keep
    // both alive forever, with every gRPC call of the request: found by bench/soak_bench.sh).
    // The front-end holds the group (its GenerateHandle) until the request is done.
    std::weak_ptr<RequestGroup> weak = group;
    auto run = std::make_shared<CompletionRun>(
        run_plan, i, workers_, delayed_, live_runs_,
        [weak](const v1::GenerateResponse& r) {
          if (auto g = weak.lock()) g->OnResponse(r);
        },
        [weak](const absl::Status& s) {
          if (auto g = weak.lock()) g->OnRunDone(s);
        });
    group->Add(run);
    runs.push_back(run);
  }
  for (auto& run : runs) run->Start();
  return std::shared_ptr<GenerateHandle>(group);
}

absl::StatusOr<v1::TokenizeResponse> RouterBackend::Tokenize(const v1::TokenizeRequest& request) {
  auto model = ServedModel(request.model());
  if (!model.ok()) return model.status();
  if (tokenizer_ == nullptr) {
    return absl::FailedPreconditionError("this model is served without a tokenizer");
  }
  v1::TokenizeResponse response;
  if (request.prompt_case() == v1::TokenizeRequest::kChat) {
    DSV3_ASSIGN_OR_RETURN(std::string text, prompts_.RenderChat(request.chat()));
    response.set_rendered_prompt(text);
    DSV3_ASSIGN_OR_RETURN(auto ids, tokenizer_->Encode(text, {.add_special_tokens = false}));
    for (int32_t id : ids) response.add_ids(id);
    return response;
  }
  const bool add = !request.has_add_special_tokens() || request.add_special_tokens();
  DSV3_ASSIGN_OR_RETURN(auto ids, tokenizer_->Encode(request.text(), {.add_special_tokens = add}));
  for (int32_t id : ids) response.add_ids(id);
  return response;
}

v1::ListModelsResponse RouterBackend::ListModels() {
  v1::ListModelsResponse response;
  auto info = GetModelInfo("");
  if (info.ok()) *response.add_models() = *info;
  return response;
}

absl::StatusOr<v1::ModelInfo> RouterBackend::GetModelInfo(const std::string& model) {
  DSV3_ASSIGN_OR_RETURN(v1::WorkerInfo served, ServedModel(model));
  v1::ModelInfo info;
  info.set_name(served.model_name());
  info.set_model_type(served.model_type());
  info.set_vocab_size(served.vocab_size());
  info.set_max_context_tokens(served.max_position_embeddings());
  info.set_config_hash(served.config_hash());
  info.set_has_tokenizer(tokenizer_ != nullptr);
  info.set_speculative_decoding(served.speculative_decoding());
  info.set_created_unix_seconds(created_unix_seconds_);
  const GenerationDefaults& d = options_.generation_defaults;
  if (d.temperature.has_value()) info.set_default_temperature(*d.temperature);
  if (d.top_p.has_value()) info.set_default_top_p(*d.top_p);
  if (d.top_k.has_value()) info.set_default_top_k(*d.top_k);
  return info;
}

std::string RouterBackend::TokenText(const std::string&, int32_t token_id) {
  if (tokenizer_ == nullptr) return "";
  auto text = tokenizer_->Decode(std::vector<int32_t>{token_id});
  return text.ok() ? *text : "";
}

}  // namespace dsv3::router
