#include "tests/support/fake_worker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dsv3::testing {

std::unique_ptr<FakeWorker> FakeWorker::Start(FakeWorkerScript script) {
  std::unique_ptr<FakeWorker> worker(new FakeWorker(std::move(script)));
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(static_cast<v1::WorkerStatus::Service*>(worker.get()));
  const v1::WorkerRole role = worker->script_.role;
  if (role == v1::WORKER_ROLE_PREFILL || role == v1::WORKER_ROLE_COLOCATED) {
    builder.RegisterService(static_cast<v1::PrefillWorker::Service*>(worker.get()));
  }
  if (role == v1::WORKER_ROLE_DECODE || role == v1::WORKER_ROLE_COLOCATED) {
    builder.RegisterService(static_cast<v1::DecodeWorker::Service*>(worker.get()));
  }
  worker->server_ = builder.BuildAndStart();
  if (worker->server_ == nullptr || port == 0) return nullptr;
  worker->address_ = absl::StrCat("127.0.0.1:", port);
  return worker;
}

FakeWorker::~FakeWorker() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // the calls waiting here answer
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
}

FakeWorkerCalls FakeWorker::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

bool FakeWorker::WaitFor(const std::function<bool(const FakeWorkerCalls&)>& done,
                         absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto holds = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(calls_); };
  return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
}

void FakeWorker::HoldPrefills(bool hold) {
  absl::MutexLock lock(&mu_);
  hold_ = hold;
}

void FakeWorker::Pause(bool paused) {
  absl::MutexLock lock(&mu_);
  paused_ = paused;
}

void FakeWorker::SetDraining(bool draining) {
  absl::MutexLock lock(&mu_);
  draining_ = draining;
}

grpc::Status FakeWorker::GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*,
                                 v1::WorkerInfo* info) {
  info->set_role(script_.role);
  info->set_model_name("fake");
  info->set_config_hash("fake-config");
  info->mutable_kv_layout()->set_block_size(script_.block_size);
  info->mutable_kv_layout()->set_num_blocks(script_.num_blocks);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::WatchLoad(grpc::ServerContext* context,
                                   const v1::WatchLoadRequest* request,
                                   grpc::ServerWriter<v1::LoadReport>* writer) {
  const absl::Duration interval = absl::Milliseconds(std::max(10, request->interval_ms()));
  while (!context->IsCancelled()) {
    v1::LoadReport report;
    report.set_role(script_.role);
    report.set_unix_ms(absl::ToUnixMillis(absl::Now()));
    report.set_kv_blocks_total(script_.num_blocks);
    report.set_kv_blocks_free(script_.num_blocks);
    bool paused = false;
    {
      absl::MutexLock lock(&mu_);
      report.set_draining(draining_);
      paused = paused_;
    }
    if (!paused && !writer->Write(report)) break;
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) break;
  }
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Reserve(grpc::ServerContext*, const v1::ReserveRequest* request,
                                 v1::ReserveResponse* response) {
  absl::MutexLock lock(&mu_);
  if (calls_.reserves++ < script_.reserve_failures) {
    return grpc::Status(script_.reserve_failure, "scripted Reserve failure");
  }
  const uint64_t lease = next_lease_++;
  secrets_[lease] = lease * 7919 + 1;
  calls_.leases.push_back(lease);
  v1::KvDestination* d = response->mutable_destination();
  d->set_lease_id(lease);
  d->set_lease_secret(secrets_[lease]);
  d->set_lease_expiry_unix_ms(absl::ToUnixMillis(absl::Now()) + request->lease_ms());
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                                 v1::PrefillResponse* response) {
  const uint64_t job_id = request->job_id();
  absl::MutexLock lock(&mu_);
  ++calls_.prefills;
  if (request->has_destination()) ++calls_.prefills_with_destination;
  Job& job = jobs_[job_id];
  job.has_destination |= request->has_destination();
  // Answer once the job can (it has its destination, or was cancelled) and is not held.
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Job& j = jobs_[job_id];
    return stopping_ || (!hold_ && (j.has_destination || !j.cancel.empty()));
  };
  while (!mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(20))) {
    if (context->IsCancelled() && !hold_) break;  // a held worker does not notice
  }
  const Job done = jobs_[job_id];
  jobs_.erase(job_id);
  ++calls_.prefill_answers;
  if (!done.cancel.empty()) return grpc::Status(grpc::StatusCode::CANCELLED, done.cancel);
  if (stopping_ || context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the call ended");
  }
  if (calls_.prefill_answers <= script_.prefill_failures) {
    return grpc::Status(script_.prefill_failure, "scripted Prefill failure");
  }
  response->set_first_token_id(script_.first_token);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::UpdatePrefill(grpc::ServerContext*,
                                       const v1::UpdatePrefillRequest* request,
                                       v1::UpdatePrefillResponse*) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(request->job_id());
  if (request->has_destination()) ++calls_.destination_updates;
  if (request->update_case() == v1::UpdatePrefillRequest::kCancelReason) {
    calls_.cancels.push_back(request->cancel_reason());
  }
  // An update may overtake its Prefill (separate calls): kept for it, as the real worker does.
  if (it == jobs_.end()) it = jobs_.emplace(request->job_id(), Job{}).first;
  if (request->has_destination()) it->second.has_destination = true;
  if (request->update_case() == v1::UpdatePrefillRequest::kCancelReason) {
    it->second.cancel = request->cancel_reason();
  }
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Decode(grpc::ServerContext* context, const v1::DecodeRequest* request,
                                grpc::ServerWriter<v1::DecodeResponse>* writer) {
  {
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find(request->lease_id());
    if (it == secrets_.end() || it->second != request->lease_secret()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no such lease");
    }
    secrets_.erase(it);  // the sequence's now
    calls_.decodes.push_back(request->lease_id());
  }
  // The first token came from the prefill; max_tokens counts it.
  const size_t count =
      std::min(script_.decode_tokens.size(),
               static_cast<size_t>(std::max(1, request->sampling().max_tokens()) - 1));
  for (size_t i = 0; i < count; ++i) {
    {
      absl::MutexLock lock(&mu_);
      auto going = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !paused_ || stopping_; };
      while (!mu_.AwaitWithTimeout(absl::Condition(&going), absl::Milliseconds(20))) {
        if (context->IsCancelled()) {
          return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while stopped");
        }
      }
    }
    v1::DecodeResponse response;
    response.add_token_ids(script_.decode_tokens[i]);
    if (i + 1 == count) {
      response.set_finish_reason(v1::FINISH_REASON_LENGTH);
      response.mutable_usage()->set_completion_tokens(static_cast<int32_t>(i + 2));
    }
    if (!writer->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Release(grpc::ServerContext*, const v1::ReleaseRequest* request,
                                 v1::ReleaseResponse* response) {
  absl::MutexLock lock(&mu_);
  auto it = secrets_.find(request->lease_id());
  if (it == secrets_.end() || it->second != request->lease_secret()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such lease");
  }
  secrets_.erase(it);
  calls_.released[request->lease_id()] = request->reason();
  response->set_released(true);
  return grpc::Status::OK;
}

}  // namespace dsv3::testing
