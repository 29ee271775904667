#include "tests/router/scripted_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace dsv3::router::testing {

class ScriptedBackend::Run final : public GenerateHandle {
 public:
  Run(ScriptedBackend* backend, v1::GenerateRequest request,
      std::shared_ptr<GenerateObserver> observer, Script script)
      : backend_(backend),
        request(std::move(request)),
        observer(std::move(observer)),
        script(std::move(script)) {}

  void Cancel() override { backend_->CancelRun(*this); }

  ScriptedBackend* const backend_;
  const v1::GenerateRequest request;
  const std::shared_ptr<GenerateObserver> observer;
  const Script script;
  // Guarded by the backend's mu_.
  bool cancelled = false;
  bool done = false;
  size_t step = 0;
  std::vector<int32_t> emitted;  // token ids per index (all indices emit the same count)
};

ScriptedBackend::ScriptedBackend() : emitter_([this] { EmitterLoop(); }) {}

ScriptedBackend::~ScriptedBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  emitter_.join();
}

absl::StatusOr<std::shared_ptr<GenerateHandle>> ScriptedBackend::Generate(
    const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) {
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generate_calls_;
    last_request_ = request;
    if (!request.model().empty() && request.model() != kModel) {
      return absl::NotFoundError(absl::StrCat("unknown model '", request.model(), "'"));
    }
    if (!generate_error_.ok()) return generate_error_;
    run = std::make_shared<Run>(this, request, std::move(observer), script_);
    ++running_;
  }
  Schedule(run, Clock::now());
  return run;
}

absl::StatusOr<v1::TokenizeResponse> ScriptedBackend::Tokenize(const v1::TokenizeRequest& request) {
  if (!request.model().empty() && request.model() != kModel) {
    return absl::NotFoundError(absl::StrCat("unknown model '", request.model(), "'"));
  }
  v1::TokenizeResponse response;
  std::string text = request.text();
  if (request.has_chat()) {
    text.clear();
    for (const v1::ChatMessage& m : request.chat().messages()) {
      absl::StrAppend(&text, "<", m.role(), ">", m.content());
    }
    response.set_rendered_prompt(text);
  }
  for (unsigned char c : text) response.add_ids(c);
  return response;
}

v1::ListModelsResponse ScriptedBackend::ListModels() {
  v1::ListModelsResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  if (!ready_) return response;
  v1::ModelInfo* info = response.add_models();
  info->set_name(kModel);
  info->set_model_type("deepseek_v3");
  info->set_vocab_size(1000);
  info->set_max_context_tokens(4096);
  info->set_has_tokenizer(true);
  info->set_created_unix_seconds(1700000000);
  return response;
}

absl::StatusOr<v1::ModelInfo> ScriptedBackend::GetModelInfo(const std::string& model) {
  v1::ListModelsResponse models = ListModels();
  for (const v1::ModelInfo& info : models.models()) {
    if (model.empty() || model == info.name()) return info;
  }
  return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
}

std::string ScriptedBackend::TokenText(const std::string& /*model*/, int32_t token_id) {
  if (token_id == 99) return "\xE4\xBD";
  return absl::StrCat("<", token_id, ">");
}

void ScriptedBackend::SetScript(Script script) {
  std::lock_guard<std::mutex> lock(mu_);
  script_ = std::move(script);
}

void ScriptedBackend::SetGenerateError(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  generate_error_ = std::move(status);
}

void ScriptedBackend::SetReady(bool ready) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = ready;
}

void ScriptedBackend::ReleaseHeld() {
  std::vector<std::shared_ptr<Run>> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held.swap(held_);
  }
  for (auto& run : held) Schedule(std::move(run), Clock::now());
}

int ScriptedBackend::generate_calls() {
  std::lock_guard<std::mutex> lock(mu_);
  return generate_calls_;
}

int ScriptedBackend::cancels() {
  std::lock_guard<std::mutex> lock(mu_);
  return cancels_;
}

int ScriptedBackend::running() {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

v1::GenerateRequest ScriptedBackend::last_request() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_request_;
}

template <typename Pred>
bool ScriptedBackend::WaitFor(Pred pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pred()) return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return pred();
}

bool ScriptedBackend::WaitForCancels(int count, absl::Duration timeout) {
  return WaitFor([&] { return cancels_ >= count; }, timeout);
}

bool ScriptedBackend::WaitForHeld(int count, absl::Duration timeout) {
  return WaitFor([&] { return static_cast<int>(held_.size()) >= count; }, timeout);
}

bool ScriptedBackend::WaitForRunning(int count, absl::Duration timeout) {
  return WaitFor([&] { return running_ == count; }, timeout);
}

void ScriptedBackend::Schedule(std::shared_ptr<Run> run, Clock::time_point when) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace(when, std::move(run));
  }
  cv_.notify_all();
}

void ScriptedBackend::CancelRun(Run& run) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (run.done || run.cancelled) return;
    run.cancelled = true;
    ++cancels_;
    // A queued run is picked first by the emitter once cancelled; a held one is queued.
    for (auto it = held_.begin(); it != held_.end(); ++it) {
      if (it->get() == &run) {
        queue_.emplace(Clock::now(), std::move(*it));
        held_.erase(it);
        break;
      }
    }
  }
  cv_.notify_all();
}

void ScriptedBackend::EmitterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = queue_.begin();
    // A cancelled run is due at once, wherever it sits in the queue.
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->second->cancelled) {
        first = it;
        break;
      }
    }
    if (!first->second->cancelled && first->first > Clock::now()) {
      cv_.wait_until(lock, first->first);
      continue;
    }
    std::shared_ptr<Run> run = std::move(first->second);
    queue_.erase(first);
    lock.unlock();
    Step(run);
    lock.lock();
  }
}

void ScriptedBackend::Step(const std::shared_ptr<Run>& run) {
  const Script& script = run->script;
  const int n = std::max(1, run->request.n());
  size_t piece_index = 0;
  bool last = false;
  bool cancelled = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (run->done) return;
    cancelled = run->cancelled;
    if (cancelled || script.pieces.empty()) {
      run->done = true;
      --running_;
    }
  }
  if (cancelled) {
    run->observer->OnDone(absl::CancelledError("cancelled by the client"));
    return;
  }
  if (script.pieces.empty()) {
    run->observer->OnDone(script.final_status);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    piece_index = run->step % script.pieces.size();
    last = !script.endless && run->step + 1 == script.pieces.size();
    ++run->step;
    if (last) {
      run->done = true;
      --running_;
    } else if (script.hold_after_first && run->step == 1) {
      held_.push_back(run);
    } else {
      queue_.emplace(Clock::now() + absl::ToChronoNanoseconds(script.interval), run);
    }
  }
  cv_.notify_all();

  const Piece& piece = script.pieces[piece_index];
  run->emitted.insert(run->emitted.end(), piece.token_ids.begin(), piece.token_ids.end());
  const int32_t logprobs = run->request.sampling().logprobs();
  for (int i = 0; i < n; ++i) {
    v1::GenerateResponse response;
    response.set_request_id(run->request.request_id());
    response.set_index(i);
    response.set_text(absl::StrReplaceAll(piece.text, {{"{i}", absl::StrCat(i)}}));
    for (int32_t id : piece.token_ids) {
      response.add_token_ids(id);
      if (logprobs > 0) {
        v1::TokenLogprob* lp = response.add_logprobs();
        lp->set_token_id(id);
        lp->set_logprob(-0.25f * static_cast<float>(id % 4 + 1));
        for (int j = 0; j < logprobs; ++j) {
          v1::TopLogprob* top = lp->add_top();
          top->set_token_id(id + 100 + j);
          top->set_logprob(-1.0f - static_cast<float>(j));
        }
      }
    }
    if (last && script.final_status.ok()) {
      response.set_finish_reason(script.finish_reason);
      response.mutable_usage()->set_prompt_tokens(script.prompt_tokens);
      response.mutable_usage()->set_cached_prompt_tokens(script.cached_prompt_tokens);
      response.mutable_usage()->set_completion_tokens(static_cast<int32_t>(run->emitted.size()));
    }
    run->observer->OnResponse(response);
  }
  if (last) run->observer->OnDone(script.final_status);
}

}  // namespace dsv3::router::testing
