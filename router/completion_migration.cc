// CompletionRun's migration (see completion_run.h): resuming a request whose decode worker
// failed on another one, watching the attempt's decode worker for silence, and starting a
// prompt again elsewhere when its prefill worker falls silent.

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "router/completion_decode_reader.h"
#include "router/completion_run.h"
namespace dsv3::router {

bool CompletionRun::Resume(const char* reason, const std::string& why) {
  const int64_t remaining =
      static_cast<int64_t>(plan_->sampling.max_tokens()) - static_cast<int64_t>(output_.size());
  if (migrations_ >= plan_->migration_limit || remaining <= 0 || absl::Now() >= plan_->deadline) {
    return false;
  }
  // A lease the failed attempt's Decode never took goes back (if its worker still answers).
  ReleaseLease("the request migrated to another decode worker");
  DroppedDecode failed;
  {
    absl::MutexLock lock(&mu_);
    if (!CanResume(state_)) return false;
    if (!cached_prompt_tokens_.has_value() && !output_.empty()) {
      // What the first attempt did not compute of the client's prompt.
      cached_prompt_tokens_ = std::min<int32_t>(
          static_cast<int32_t>(plan_->prompt.size()),
          prefill_on_decode_ ? destination_.cached_tokens() : prefill_response_.cached_tokens());
    }
    ++attempt_;
    if (decode_reader_ != nullptr) retired_readers_.push_back(std::move(decode_reader_));
    failed = DropDecodeLocked();
  }
  Forget(failed);
  ++migrations_;
  resumed_output_ = static_cast<int64_t>(output_.size());
  prompt_ = plan_->prompt;
  prompt_.insert(prompt_.end(), output_.begin(), output_.end());
  sampling_.set_max_tokens(static_cast<int32_t>(remaining));
  tried_decode_ = {failed.decode.address};
  tried_prefill_.clear();
  backoff_ = absl::Milliseconds(20);
  reserve_request_.Clear();
  reserve_response_.Clear();
  prefill_request_.Clear();
  prefill_response_.Clear();
  Metrics().migrations.WithLabels({plan_->model_name, reason}).Increment();
  DSV3_LOG(WARNING).With("request_id", plan_->request_id)
      << "decode worker " << failed.decode.address << " failed (" << why << "); resuming after "
      << output_.size() << " tokens on another decode worker (migration " << migrations_ << " of "
      << plan_->migration_limit << ")";
  Begin();
  return true;
}

CompletionRun::DroppedDecode CompletionRun::DropDecodeLocked() {
  DroppedDecode dropped{std::exchange(decode_, WorkerView{}), std::exchange(decode_assigned_, 0),
                        std::exchange(stall_watch_, 0)};
  StepLocked(CompletionEvent::kDropLease);
  destination_.Clear();
  return dropped;
}

void CompletionRun::Forget(const DroppedDecode& dropped) {
  if (dropped.watch != 0) workers_.UnwatchStall(dropped.watch);
  if (!dropped.decode.address.empty()) {
    workers_.NoteDone(dropped.decode.address, dropped.blocks);
  }
}

void CompletionRun::WatchDecodeWorker(const std::string& address) {
  int attempt = 0;
  {
    absl::MutexLock lock(&mu_);
    attempt = attempt_;
  }
  std::weak_ptr<CompletionRun> weak = weak_from_this();
  const uint64_t token = workers_.WatchStall(address, [weak, attempt] {
    if (auto self = weak.lock()) self->OnDecodeStalled(attempt);
  });
  bool drop = false;
  {
    absl::MutexLock lock(&mu_);
    drop = state_.request == RequestPhase::kFinished || attempt != attempt_;
    if (!drop) stall_watch_ = token;
  }
  if (drop) workers_.UnwatchStall(token);
}

void CompletionRun::OnDecodeStalled(int attempt) {
  absl::MutexLock lock(&mu_);
  if (attempt != attempt_) return;
  const CompletionAction action = StepLocked(CompletionEvent::kDecodeStalled);
  if (action == CompletionAction::kIgnore) return;
  stall_watch_ = 0;  // called once
  DSV3_LOG(WARNING).With("request_id", plan_->request_id)
      << "decode worker " << decode_.address << " stopped answering; ending its call";
  if (action == CompletionAction::kCancelDecode && decode_reader_ != nullptr) {
    decode_reader_->Cancel();  // OnDone resumes the request elsewhere
  } else if (action == CompletionAction::kCancelReserve && reserve_call_ != nullptr) {
    reserve_call_->TryCancel();  // OnReserved tries another decode worker
  }
}

bool CompletionRun::DecodeStalled() {
  absl::MutexLock lock(&mu_);
  return state_.decode_stalled;
}

void CompletionRun::WatchPrefillWorker(const std::string& address, uint64_t job_id) {
  std::weak_ptr<CompletionRun> weak = weak_from_this();
  const uint64_t token = workers_.WatchStall(address, [weak, job_id] {
    if (auto self = weak.lock()) self->OnPrefillStalled(job_id);
  });
  bool drop = false;
  {
    absl::MutexLock lock(&mu_);
    // The call may have ended already (OnPrefilled ran first).
    drop = state_.prefill == PrefillPhase::kIdle || job_id_ != job_id ||
           state_.request == RequestPhase::kFinished;
    if (!drop) prefill_stall_watch_ = token;
  }
  if (drop) workers_.UnwatchStall(token);
}

void CompletionRun::OnPrefillStalled(uint64_t job_id) {
  absl::MutexLock lock(&mu_);
  if (job_id_ != job_id ||
      StepLocked(CompletionEvent::kPrefillStalled) == CompletionAction::kIgnore) {
    return;
  }
  prefill_stall_watch_ = 0;  // called once
  DSV3_LOG(WARNING).With("request_id", plan_->request_id)
      << "prefill worker " << prefill_.address << " stopped answering; ending its call";
  if (prefill_call_ != nullptr) prefill_call_->TryCancel();  // OnPrefilled starts again
}

bool CompletionRun::RestartAfterPrefillStall(const std::string& stalled, bool lease_was_shared) {
  if (absl::Now() >= plan_->deadline) return false;
  if (!lease_was_shared) {
    // The destination never reached it: the lease (or the pending Reserve) stays; the
    // Reserve's answer attaches it to the new job.
    auto next = workers_.Pick(WorkerKind::kPrefill, tried_prefill_, Hint());
    if (!next.ok()) return false;
    Metrics().migrations.WithLabels({plan_->model_name, "prefill_stalled"}).Increment();
    DSV3_LOG(WARNING).With("request_id", plan_->request_id)
        << "prefill worker " << stalled << " stalled; computing the prompt on " << next->address;
    PrefillOn(*next);
    return true;
  }
  // A new lease and a new prefill: OnPrefilled marked the old one abandoned.
  DroppedDecode old;
  uint64_t old_lease = 0;
  {
    absl::MutexLock lock(&mu_);
    if (state_.over() || state_.lease == LeasePhase::kReserving ||
        state_.lease == LeasePhase::kDecoding) {
      return false;
    }
    old_lease = destination_.lease_id();
    old = DropDecodeLocked();
  }
  Forget(old);
  Metrics().migrations.WithLabels({plan_->model_name, "prefill_stalled"}).Increment();
  tried_decode_.clear();  // the decode worker is fine: only its lease is spoiled
  reserve_response_.Clear();
  prefill_request_.clear_destination();
  DSV3_LOG(WARNING).With("request_id", plan_->request_id)
      << "prefill worker " << stalled << " stalled holding lease " << old_lease << " on "
      << old.decode.address
      << " (it may still write into it): leaving that lease to expire, starting again on "
         "another prefill worker";
  Begin();
  return true;
}

}  // namespace dsv3::router
