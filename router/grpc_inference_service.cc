#include "router/grpc_inference_service.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace dsv3::router {
namespace {

// Milliseconds left until the call's deadline; nullopt when it has none.
std::optional<int64_t> MillisecondsLeft(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::system_clock::now());
  return std::max<int64_t>(left.count(), 0);
}

// One Generate call. The reactor and the backend's observer share this state; the
// reactor deletes itself in OnDone, the state lives on while the backend still holds the
// observer.
//
// Invariants (all under mu_): at most one write in flight (`writing_`); Finish is called
// exactly once, only when no write is in flight, and nothing touches the reactor after it
// (`finished_`). Calls into gRPC (StartWrite, Finish) and into the backend (Cancel) are
// made outside mu_: the backend may call the observer from inside Cancel.
class GenerateStream final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  // The stream owns itself until OnDone (gRPC's contract); the observer shares it.
  static GenerateStream* Create() {
    std::shared_ptr<GenerateStream> stream(new GenerateStream());
    stream->self_ = stream;
    return stream.get();
  }

  // Starts the backend request; on a synchronous error finishes the call with it.
  void Start(InferenceBackend& backend, grpc::CallbackServerContext& context,
             const v1::GenerateRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // From the backend's observer (any thread).
  void Enqueue(const v1::GenerateResponse& response);
  void BackendDone(const absl::Status& status);

 private:
  enum class Action { kNone, kWrite, kFinish };
  class Observer;

  GenerateStream() = default;

  // Decides what to do next; the caller performs it with Perform() after unlocking.
  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Perform(Action action);
  // Cancels the backend request (outside mu_); idempotent on the backend side.
  void CancelBackend();

  absl::Mutex mu_;
  std::deque<v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  // The response being written; touched only by the single in-flight write.
  v1::GenerateResponse current_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // The client left (OnCancel, or a write failed): stop writing and finish.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> backend_status_ ABSL_GUARDED_BY(mu_);
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<GenerateHandle> handle_ ABSL_GUARDED_BY(mu_);
  // Keeps this object alive for the observer; reset in OnDone.
  std::shared_ptr<GenerateStream> self_;
};

// The backend holds this; it forwards to the stream while the stream exists. The stream
// never runs a gRPC operation after it finished, so forwarding after Finish is harmless,
// and `stream_` (a shared_ptr) keeps the object's memory valid until the backend drops us.
class GenerateStream::Observer final : public GenerateObserver {
 public:
  explicit Observer(std::shared_ptr<GenerateStream> stream) : stream_(std::move(stream)) {}
  void OnResponse(const v1::GenerateResponse& response) override { stream_->Enqueue(response); }
  void OnDone(const absl::Status& status) override { stream_->BackendDone(status); }

 private:
  std::shared_ptr<GenerateStream> stream_;
};

void GenerateStream::Start(InferenceBackend& backend, grpc::CallbackServerContext& context,
                           const v1::GenerateRequest& request) {
  // Keeps this alive even if the backend finishes the call synchronously.
  const std::shared_ptr<GenerateStream> keep = self_;
  const std::optional<int64_t> left_ms = MillisecondsLeft(context);
  if (left_ms.has_value() && *left_ms == 0) {
    BackendDone(absl::DeadlineExceededError("the call's deadline had passed on arrival"));
    return;
  }
  absl::StatusOr<std::shared_ptr<GenerateHandle>> handle;
  if (left_ms.has_value() && (request.timeout_ms() <= 0 || request.timeout_ms() > *left_ms)) {
    // The backend sees only the request: carry the gRPC deadline in it.
    v1::GenerateRequest with_deadline = request;
    with_deadline.set_timeout_ms(*left_ms);
    handle = backend.Generate(with_deadline, std::make_shared<Observer>(keep));
  } else {
    handle = backend.Generate(request, std::make_shared<Observer>(keep));
  }
  if (!handle.ok()) {
    BackendDone(handle.status());
    return;
  }
  bool cancel_now = false;
  {
    absl::MutexLock lock(&mu_);
    // A backend that already finished (synchronously) needs no handle kept.
    if (!backend_status_.has_value()) handle_ = *std::move(handle);
    cancel_now = cancelled_;
  }
  if (cancel_now) CancelBackend();
}

void GenerateStream::Enqueue(const v1::GenerateResponse& response) {
  Action action;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || cancelled_) return;
    queue_.push_back(response);
    action = NextActionLocked();
  }
  Perform(action);
}

void GenerateStream::BackendDone(const absl::Status& status) {
  Action action;
  {
    absl::MutexLock lock(&mu_);
    if (backend_status_.has_value()) return;  // exactly once; ignore a second report
    backend_status_ = status;
    handle_.reset();  // the request is over: drop the handle (and any cycle through it)
    action = NextActionLocked();
  }
  Perform(action);
}

void GenerateStream::OnWriteDone(bool ok) {
  Action action;
  bool cancel = false;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !cancelled_) {
      cancelled_ = true;
      cancel = true;
    }
    action = NextActionLocked();
  }
  if (cancel) CancelBackend();
  Perform(action);
}

void GenerateStream::OnCancel() {
  Action action;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    action = NextActionLocked();
  }
  CancelBackend();
  Perform(action);
}

void GenerateStream::OnDone() {
  std::shared_ptr<GenerateHandle> handle;
  {
    absl::MutexLock lock(&mu_);
    handle = std::move(handle_);
    queue_.clear();
  }
  // A call that ended without the backend finishing (e.g. the server shut down) must not
  // leave the request running.
  if (handle != nullptr) handle->Cancel();
  std::shared_ptr<GenerateStream> last = std::move(self_);  // may delete this on return
}

GenerateStream::Action GenerateStream::NextActionLocked() {
  if (finished_ || writing_) return Action::kNone;
  if (!cancelled_ && !queue_.empty()) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    return Action::kWrite;
  }
  if (cancelled_) {
    finished_ = true;
    final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
    return Action::kFinish;
  }
  if (backend_status_.has_value()) {
    finished_ = true;
    final_status_ = ToGrpcStatus(*backend_status_);
    return Action::kFinish;
  }
  return Action::kNone;
}

void GenerateStream::Perform(Action action) {
  switch (action) {
    case Action::kNone:
      return;
    case Action::kWrite:
      StartWrite(&current_);
      return;
    case Action::kFinish: {
      grpc::Status status;
      {
        absl::MutexLock lock(&mu_);
        status = final_status_;
      }
      Finish(std::move(status));
      return;
    }
  }
}

void GenerateStream::CancelBackend() {
  std::shared_ptr<GenerateHandle> handle;
  {
    absl::MutexLock lock(&mu_);
    handle = handle_;
  }
  if (handle != nullptr) handle->Cancel();
}

// A Generate refused before it started (no key, over a limit).
class RefusedStream final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  void Refuse(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// The authorization metadata ("" when absent).
std::string Authorization(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  return it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

grpc::Status Refusal(grpc::CallbackServerContext& context, const absl::Status& status) {
  if (std::optional<absl::Duration> retry = RetryAfter(status); retry.has_value()) {
    context.AddTrailingMetadata("retry-after-ms", absl::StrCat(absl::ToInt64Milliseconds(*retry)));
  }
  return ToGrpcStatus(status);
}

}  // namespace

absl::Status GrpcInferenceService::Authenticate(const grpc::CallbackServerContext& context) {
  if (api_keys_ == nullptr) return absl::OkStatus();
  return api_keys_->Authenticate(Authorization(context)).status();
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GrpcInferenceService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  if (api_keys_ != nullptr) {
    absl::StatusOr<std::shared_ptr<ApiKeyUse>> use =
        api_keys_->AdmitGeneration(Authorization(*context));
    if (!use.ok()) {
      auto* refused = new RefusedStream();
      refused->Refuse(Refusal(*context, use.status()));
      return refused;
    }
    // The request's tokens count against its key; its end frees the key's slot.
    MeteredBackend metered(backend_, *std::move(use));
    GenerateStream* reactor = GenerateStream::Create();
    reactor->Start(metered, *context, *request);
    return reactor;
  }
  GenerateStream* reactor = GenerateStream::Create();
  reactor->Start(backend_, *context, *request);
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                         const v1::TokenizeRequest* request,
                                                         v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  absl::StatusOr<v1::TokenizeResponse> result = backend_.Tokenize(*request);
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::ListModels(grpc::CallbackServerContext* context,
                                                           const v1::ListModelsRequest* /*request*/,
                                                           v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  *response = backend_.ListModels();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                             const v1::GetModelInfoRequest* request,
                                                             v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  absl::StatusOr<v1::ModelInfo> info = backend_.GetModelInfo(request->model());
  if (info.ok()) *response = *std::move(info);
  reactor->Finish(ToGrpcStatus(info.status()));
  return reactor;
}

}  // namespace dsv3::router
