#include "router/completion_run.h"

#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "router/completion_decode_reader.h"
#include "router/worker_notices.h"

namespace dsv3::router {
namespace {

// A prefill must finish this long before its lease expires (in-flight puts land in time).
constexpr absl::Duration kLeaseMargin = absl::Seconds(1);
constexpr int kLeaseMs = 30000;

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace

CompletionRun::CompletionRun(std::shared_ptr<const CompletionPlan> plan, int index,
                             WorkerRegistry& workers, DelayedTasks& delayed,
                             std::shared_ptr<LiveCount> live, ResponseFn on_response,
                             DoneFn on_done)
    : plan_(std::move(plan)),
      index_(index),
      workers_(workers),
      delayed_(delayed),
      live_(std::move(live)),
      on_response_(std::move(on_response)),
      on_done_(std::move(on_done)),
      text_(plan_->return_text ? plan_->tokenizer : nullptr,
            std::vector<std::string>(plan_->sampling.stop().begin(), plan_->sampling.stop().end()),
            !plan_->sampling.has_skip_special_tokens() || plan_->sampling.skip_special_tokens()),
      parsers_(plan_->return_text ? plan_->tool_calls.get() : nullptr,
               plan_->return_text ? plan_->reasoning_parser : ""),
      prompt_(plan_->prompt),
      sampling_(plan_->sampling) {
  live_->Add();
}

CompletionRun::~CompletionRun() { live_->Remove(); }

CompletionAction CompletionRun::StepLocked(CompletionEvent event) {
  CompletionTransition t = NextCompletionState(state_, event, absl::Now());
  state_ = t.state;
  return t.action;
}

PickHint CompletionRun::Hint() const {
  return PickHint{plan_->kv_names, static_cast<int64_t>(prompt_.size())};
}

std::unique_ptr<grpc::ClientContext> CompletionRun::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(plan_->deadline));
  return ctx;
}

void CompletionRun::Start() { Begin(); }

void CompletionRun::Begin() {
  auto decode = workers_.Pick(WorkerKind::kDecode, tried_decode_, Hint());
  if (!decode.ok()) return Finish(decode.status());
  const int64_t block_size = std::max(1, decode->info.kv_layout().block_size());
  const int64_t suffix = static_cast<int64_t>(prompt_.size()) - decode->cached_blocks * block_size;
  prefill_on_decode_ =
      plan_->decode_prefill_max_tokens > 0 && decode->cached_blocks > 0 &&
      suffix <= plan_->decode_prefill_max_tokens &&
      decode->cached_blocks > workers_.BestOverlap(WorkerKind::kPrefill, plan_->kv_names);
  std::optional<WorkerView> prefill;
  bool ignored = false;
  if (!prefill_on_decode_) {
    auto picked = workers_.Pick(WorkerKind::kPrefill, tried_prefill_, Hint());
    if (!picked.ok()) return Finish(picked.status());
    prefill = *picked;
  }
  {
    absl::MutexLock lock(&mu_);
    // Cancelled before it started: nothing to undo.
    if (StepLocked(CompletionEvent::kReserveBegin) == CompletionAction::kIgnore) {
      if (state_.over()) return;
      ignored = true;  // a lease is still held: a bug, but never a hang
    }
  }
  if (ignored) return Finish(absl::InternalError("an attempt began with a lease held"));
  if (prefill_on_decode_) return ReserveOn(*decode);
  // Both at once: the prompt queues and computes on the prefill worker while the decode
  // worker reserves; the destination follows in an UpdatePrefill (the Prefill goes first so
  // that the Reserve's answer finds it).
  PrefillOn(*prefill);
  ReserveOn(*decode);
}

void CompletionRun::AfterLocalReserve() {
  int64_t cached = 0;
  {
    absl::MutexLock lock(&mu_);
    if (state_.over()) return;  // Settle frees the lease
    cached = destination_.cached_tokens();
  }
  if (static_cast<int64_t>(prompt_.size()) - cached <= plan_->decode_prefill_max_tokens &&
      cached > 0) {
    Metrics().router_decisions.WithLabels({"prefill", "decode_worker"}).Increment();
    return StartDecode();
  }
  // Evicted since its last report: a prefill worker computes the prompt after all.
  prefill_on_decode_ = false;
  auto prefill = workers_.Pick(WorkerKind::kPrefill, tried_prefill_, Hint());
  if (!prefill.ok()) return FailBeforeDecode(prefill.status(), /*reserve_ended=*/false);
  PrefillOn(*prefill);
}

void CompletionRun::ReserveOn(WorkerView decode) {
  tried_decode_.insert(decode.address);
  // Blocks it will take: what its prefix cache lacks (as far as the router knows).
  const int64_t blocks =
      std::max<int64_t>(1, (static_cast<int64_t>(prompt_.size()) + sampling_.max_tokens()) /
                                   std::max(1, decode.info.kv_layout().block_size()) +
                               1 - decode.cached_blocks);
  bool over = false;
  bool lease_held = false;
  uint64_t old_watch = 0;
  grpc::ClientContext* call = nullptr;
  {
    absl::MutexLock lock(&mu_);
    // The request may have ended meanwhile (a retry or a wait for capacity was under way).
    over = StepLocked(CompletionEvent::kReserveSend) == CompletionAction::kIgnore;
    lease_held = over && !state_.over();  // a bug, but never a hang
    if (!over) {
      decode_ = decode;
      decode_assigned_ = blocks;
      reserve_call_ = NewContext();
      old_watch = std::exchange(stall_watch_, 0);
    }
  }
  if (old_watch != 0) workers_.UnwatchStall(old_watch);
  if (lease_held) {
    return FailBeforeDecode(absl::InternalError("a Reserve sent with a lease held"),
                            /*reserve_ended=*/false);
  }
  if (over) return Settle();
  WatchDecodeWorker(decode.address);
  workers_.NoteAssigned(decode.address, blocks);
  reserve_request_.set_request_id(plan_->request_id);
  reserve_request_.set_prompt_tokens(static_cast<int32_t>(prompt_.size()));
  reserve_request_.set_max_new_tokens(sampling_.max_tokens());
  reserve_request_.set_config_hash(plan_->config_hash);
  reserve_request_.set_lease_ms(kLeaseMs);
  if (reserve_request_.prompt_token_ids_size() == 0) {
    // The decode worker starts the lease with the cached blocks the prompt begins with.
    reserve_request_.mutable_prompt_token_ids()->Add(prompt_.begin(), prompt_.end());
  }
  {
    absl::MutexLock lock(&mu_);
    call = reserve_call_.get();
  }
  auto self = shared_from_this();
  reserve_sent_ = absl::Now();
  decode.decode_stub->async()->Reserve(call, &reserve_request_, &reserve_response_,
                                       [self](grpc::Status status) { self->OnReserved(status); });
}

void CompletionRun::OnReserved(const grpc::Status& status) {
  if (status.ok()) {
    Metrics()
        .reserve_seconds.WithLabels({plan_->model_name})
        .Observe(absl::ToDoubleSeconds(absl::Now() - reserve_sent_));
    std::optional<WorkerView> attach_to;
    uint64_t job_id = 0;
    {
      absl::MutexLock lock(&mu_);
      destination_ = reserve_response_.destination();
      if (StepLocked(CompletionEvent::kReserveGranted) == CompletionAction::kSendDestination) {
        // From here on the prefill may write into the lease.
        attach_to = prefill_;
        job_id = job_id_;
      }
    }
    if (attach_to.has_value()) {
      // The worker stops writing a margin before the decode worker frees an unused lease.
      v1::KvDestination destination = reserve_response_.destination();
      destination.set_lease_expiry_unix_ms(destination.lease_expiry_unix_ms() -
                                           absl::ToInt64Milliseconds(kLeaseMargin));
      SendUpdate(*attach_to, job_id, &destination, "");
    }
    if (prefill_on_decode_) AfterLocalReserve();
    return Settle();
  }
  const bool stalled = DecodeStalled();
  if (!IsCancelled() && (Retryable(status.error_code()) || stalled)) {
    auto next = workers_.Pick(WorkerKind::kDecode, tried_decode_, Hint());
    if (next.ok()) return ReserveOn(*next);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      return WaitForCapacity(FromGrpcStatus(status));
    }
  }
  std::string decode_address;
  {
    absl::MutexLock lock(&mu_);
    decode_address = decode_.address;
  }
  if (stalled && !IsCancelled()) {
    return FailBeforeDecode(absl::UnavailableError(absl::StrCat("decode worker ", decode_address,
                                                                " stopped answering")),
                            /*reserve_ended=*/true);
  }
  if (IsCancelled()) {
    return FailBeforeDecode(absl::CancelledError("cancelled"), /*reserve_ended=*/true);
  }
  FailBeforeDecode(
      absl::Status(FromGrpcStatus(status).code(),
                   absl::StrCat("decode worker ", decode_address, ": ", status.error_message())),
      /*reserve_ended=*/true);
}

void CompletionRun::WaitForCapacity(const absl::Status& last_error) {
  const absl::Time retry = absl::Now() + backoff_;
  if (retry >= plan_->deadline) {
    return FailBeforeDecode(
        absl::ResourceExhaustedError(absl::StrCat(
            "no decode worker had KV capacity before the deadline: ", last_error.message())),
        /*reserve_ended=*/true);
  }
  backoff_ = std::min(backoff_ * 2, absl::Milliseconds(500));
  tried_decode_.clear();  // every worker may have freed blocks by then
  auto self = shared_from_this();
  delayed_.RunAt(retry, [self] {
    if (self->IsCancelled()) {
      return self->FailBeforeDecode(absl::CancelledError("cancelled"), /*reserve_ended=*/true);
    }
    auto decode = self->workers_.Pick(WorkerKind::kDecode, self->tried_decode_, self->Hint());
    if (!decode.ok()) return self->FailBeforeDecode(decode.status(), /*reserve_ended=*/true);
    self->ReserveOn(*decode);
  });
}

void CompletionRun::PrefillOn(WorkerView prefill) {
  tried_prefill_.insert(prefill.address);
  // Tokens it will compute: what its prefix cache lacks (as far as the router knows).
  prefill_assigned_ = std::max<int64_t>(
      1, static_cast<int64_t>(prompt_.size()) -
             prefill.cached_blocks * std::max(1, prefill.info.kv_layout().block_size()));
  workers_.NoteAssigned(prefill.address, prefill_assigned_);
  prefill_request_.set_request_id(plan_->request_id);
  if (prefill_request_.prompt_token_ids_size() == 0) {
    prefill_request_.mutable_prompt_token_ids()->Add(prompt_.begin(), prompt_.end());
    *prefill_request_.mutable_sampling() = sampling_;
    prefill_request_.set_resumed_output_tokens(static_cast<int32_t>(resumed_output_));
  }
  // A fresh id per attempt: an update meant for a failed attempt cannot reach this one.
  static thread_local std::mt19937_64 rng(std::random_device{}());
  uint64_t job_id = 0;
  while (job_id == 0) job_id = rng();
  prefill_request_.set_job_id(job_id);
  absl::Time deadline = plan_->deadline;
  bool over = false;
  grpc::ClientContext* call = nullptr;
  {
    absl::MutexLock lock(&mu_);
    // Ended while no prefill was pending (between a failed attempt and this retry, or
    // before the first): send nothing, so nothing can write into the lease. Checked in the
    // same critical section that marks the prefill pending, so a Cancel either sees it
    // pending (and cancels the job) or is seen here.
    const CompletionAction action = StepLocked(CompletionEvent::kPrefillSend);
    over = action == CompletionAction::kIgnore;
    if (!over) {
      prefill_ = prefill;
      job_id_ = job_id;
      if (action == CompletionAction::kSendDestination) {
        // The lease is granted already (a retry): the destination goes with the prompt.
        *prefill_request_.mutable_destination() = destination_;
        deadline = std::min(
            deadline, absl::FromUnixMillis(destination_.lease_expiry_unix_ms()) - kLeaseMargin);
      } else {
        prefill_request_.clear_destination();
      }
      // Replaced only by the next attempt, after this call's OnPrefilled.
      prefill_call_ = NewContext();
      prefill_call_->set_deadline(absl::ToChronoTime(deadline));
      call = prefill_call_.get();
    }
  }
  if (over) return Settle();
  auto self = shared_from_this();
  prefill.prefill_stub->async()->Prefill(
      call, &prefill_request_, &prefill_response_,
      [self](grpc::Status status) { self->OnPrefilled(status); });
  WatchPrefillWorker(prefill.address, job_id);
}

void CompletionRun::SendUpdate(const WorkerView& prefill, uint64_t job_id,
                               const v1::KvDestination* destination, const std::string& cancel) {
  SendPrefillUpdate(*prefill.prefill_stub, prefill.address, job_id, destination, cancel,
                    std::max(plan_->deadline, absl::Now() + absl::Seconds(1)), plan_->request_id);
}

void CompletionRun::OnPrefilled(const grpc::Status& status) {
  bool reserved = false;
  absl::Time lease_end = absl::InfiniteFuture();
  std::string address;
  bool ended = false;
  bool stalled = false;
  bool lease_was_shared = false;
  uint64_t watch = 0;
  {
    absl::MutexLock lock(&mu_);
    watch = std::exchange(prefill_stall_watch_, 0);
    lease_was_shared = state_.prefill == PrefillPhase::kWriting;
    // A stalled worker's lease is abandoned; a timed-out call's is kept from release for the
    // worker's write grace (completion_state.h).
    const CompletionEvent event = status.ok() ? CompletionEvent::kPrefillOk
                                  : status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                                      ? CompletionEvent::kPrefillTimedOut
                                      : CompletionEvent::kPrefillFailed;
    stalled = StepLocked(event) == CompletionAction::kRestartPrefill;
    ended = state_.over();
    reserved = state_.lease == LeasePhase::kHeld;
    if (reserved) {
      lease_end = absl::FromUnixMillis(destination_.lease_expiry_unix_ms()) - kLeaseMargin;
    }
    address = prefill_.address;
  }
  if (watch != 0) workers_.UnwatchStall(watch);
  workers_.NoteDone(address, prefill_assigned_);  // no longer queued there
  if (ended) return Settle();                     // frees the lease, reports a cancellation
  if (stalled) {
    if (RestartAfterPrefillStall(address, lease_was_shared)) return;
    return FailBeforeDecode(
        absl::UnavailableError(absl::StrCat("prefill worker ", address,
                                            " stopped answering and no other could take over")),
        /*reserve_ended=*/false);
  }
  if (!status.ok()) {
    const absl::Status failure(
        FromGrpcStatus(status).code(),
        absl::StrCat("prefill worker ", address, ": ", status.error_message()));
    // ABORTED: the KV transfer into the lease failed (the decode worker died or stalled).
    if (status.error_code() == grpc::StatusCode::ABORTED) {
      if (Resume("kv_transfer_failed", failure.ToString())) return;
      return FailBeforeDecode(absl::UnavailableError(failure.message()), /*reserve_ended=*/false);
    }
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE && absl::Now() < lease_end &&
        absl::Now() < plan_->deadline) {
      auto next = workers_.Pick(WorkerKind::kPrefill, tried_prefill_, Hint());
      if (next.ok()) {
        DSV3_LOG(WARNING).With("request_id", plan_->request_id)
            << "prefill on " << address << " failed (" << status.error_message()
            << "); retrying on " << next->address;
        return PrefillOn(*next);
      }
    }
    return FailBeforeDecode(failure, /*reserve_ended=*/false);
  }
  if (!reserved) {
    return FailBeforeDecode(
        absl::InternalError("the prefill worker answered before it had a KV destination"),
        /*reserve_ended=*/false);
  }
  std::vector<v1::TokenLogprob> logprobs;
  if (prefill_response_.has_first_token_logprob()) {
    logprobs.push_back(prefill_response_.first_token_logprob());
  }
  const int32_t first = prefill_response_.first_token_id();
  const bool ends = first == plan_->eos_token_id || sampling_.max_tokens() <= 1;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  if (ends) {
    reason = sampling_.max_tokens() <= 1 && first != plan_->eos_token_id ? v1::FINISH_REASON_LENGTH
                                                                         : v1::FINISH_REASON_STOP;
  }
  for (int32_t s : plan_->sampling.stop_token_ids()) {
    if (s == first) reason = v1::FINISH_REASON_STOP;
  }
  v1::Usage usage;
  usage.set_prompt_tokens(static_cast<int32_t>(plan_->prompt.size()));
  usage.set_completion_tokens(1);
  usage.set_cached_prompt_tokens(prefill_response_.cached_tokens());
  const bool done = reason != v1::FINISH_REASON_UNSPECIFIED;
  // The worker's own time; a wait for the destination is the router's (its Reserve).
  prefill_worker_ns_ = prefill_response_.queue_ns() + prefill_response_.kv_transfer_ns() -
                       prefill_response_.destination_wait_ns();
  if (Emit({first}, logprobs, reason, done ? &usage : nullptr) || done) {
    ReleaseLease("finished at the first token");
    return Finish(absl::OkStatus());
  }
  StartDecode();
}

void CompletionRun::StartDecode() {
  v1::DecodeRequest request;
  request.set_request_id(plan_->request_id);
  request.set_first_token_id(prefill_response_.first_token_id());
  request.mutable_prompt_token_ids()->Add(prompt_.begin(), prompt_.end());
  *request.mutable_sampling() = sampling_;
  request.set_resumed_output_tokens(static_cast<int32_t>(resumed_output_));
  request.set_eos_token_id(plan_->eos_token_id);
  request.set_prefill_here(prefill_on_decode_);
  bool over = false;
  {
    absl::MutexLock lock(&mu_);
    request.set_lease_id(destination_.lease_id());
    request.set_lease_secret(destination_.lease_secret());
    // Under mu_ so that a concurrent Cancel either sees the Decode (and cancels it) or is
    // seen here.
    if (StepLocked(CompletionEvent::kDecodeStart) != CompletionAction::kIgnore) {
      decode_reader_ = std::make_unique<DecodeReader>(shared_from_this(), NewContext());
      decode_reader_->Begin(*decode_.decode_stub, request);
      return;
    }
    over = state_.over();
  }
  if (!over) {
    return FailBeforeDecode(absl::InternalError("no KV lease held for the Decode"),
                            /*reserve_ended=*/false);
  }
  Settle();
}

bool CompletionRun::IsCancelled() {
  absl::MutexLock lock(&mu_);
  return state_.cancelled;
}

bool CompletionRun::Emit(const std::vector<int32_t>& ids,
                         const std::vector<v1::TokenLogprob>& logprobs, v1::FinishReason finish,
                         const v1::Usage* usage) {
  v1::GenerateResponse response;
  response.set_request_id(plan_->request_id);
  response.set_index(index_);
  if (!ids.empty()) {
    const ServingMetrics& m = Metrics();
    const absl::Time now = absl::Now();
    if (last_token_time_ == absl::InfinitePast()) {
      response.set_prefill_worker_ns(prefill_worker_ns_);
      m.ttft_seconds.WithLabels({plan_->model_name})
          .Observe(absl::ToDoubleSeconds(now - plan_->arrival));
      if (!prefill_on_decode_) {  // else the decode worker's compute is in the TTFT
        m.router_overhead_seconds.WithLabels({plan_->model_name})
            .Observe(std::max(0.0, absl::ToDoubleSeconds(now - plan_->arrival) -
                                       static_cast<double>(prefill_worker_ns_) * 1e-9));
      }
    } else {
      // Tokens that arrive together share the gap since the previous arrival.
      const double gap = absl::ToDoubleSeconds(now - last_token_time_) / ids.size();
      auto& itl = m.inter_token_latency_seconds.WithLabels({plan_->model_name});
      for (size_t i = 0; i < ids.size(); ++i) itl.Observe(gap);
    }
    last_token_time_ = now;
    m.generation_tokens.WithLabels({plan_->model_name}).Increment(static_cast<double>(ids.size()));
  }
  bool stop = false;
  for (size_t i = 0; i < ids.size() && !stop; ++i) {
    response.add_token_ids(ids[i]);
    if (i < logprobs.size()) {
      v1::TokenLogprob* lp = response.add_logprobs();
      *lp = logprobs[i];
      if (plan_->tokenizer != nullptr) {
        for (auto& top : *lp->mutable_top()) {
          auto t = plan_->tokenizer->Decode(std::vector<int32_t>{top.token_id()});
          if (t.ok()) top.set_text(*t);
        }
      }
    }
    ++completion_tokens_;
    output_.push_back(ids[i]);
    absl::StatusOr<CompletionText::Delta> delta = text_.Add(ids[i]);
    if (!delta.ok()) continue;  // an id outside the tokenizer: no text for it
    response.mutable_text()->append(delta->text);
    if (delta->stopped) {
      stop = true;
      response.set_finish_reason(v1::FINISH_REASON_STOP);
      response.set_matched_stop(delta->matched);
    }
  }
  if (!stop && finish != v1::FINISH_REASON_UNSPECIFIED) {
    response.mutable_text()->append(text_.Finish());
    response.set_finish_reason(finish);
    for (int32_t s : plan_->sampling.stop_token_ids()) {
      if (!ids.empty() && ids.back() == s) response.set_matched_stop(absl::StrCat(s));
    }
  }
  if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    v1::Usage* u = response.mutable_usage();
    if (usage != nullptr) *u = *usage;
    u->set_prompt_tokens(static_cast<int32_t>(plan_->prompt.size()));
    u->set_completion_tokens(completion_tokens_);
    // Not computed: by the prefill worker, or (prefill_here) by the decode worker.
    u->set_cached_prompt_tokens(cached_prompt_tokens_.value_or(
        prefill_on_decode_ ? (usage != nullptr ? usage->cached_prompt_tokens() : 0)
                           : prefill_response_.cached_tokens()));
  }
  parsers_.Apply(&response);
  if (!plan_->return_text) response.clear_text();
  on_response_(response);
  return stop;
}

void CompletionRun::ReleaseLease(const std::string& reason) {
  std::shared_ptr<v1::DecodeWorker::Stub> stub;
  uint64_t lease_id = 0;
  uint64_t secret = 0;
  {
    absl::MutexLock lock(&mu_);
    // A lease a Decode took is the sequence's now: the Decode's end frees it.
    if (!decode_.decode_stub ||
        StepLocked(CompletionEvent::kRelease) == CompletionAction::kIgnore) {
      return;
    }
    stub = decode_.decode_stub;
    lease_id = destination_.lease_id();
    secret = destination_.lease_secret();
  }
  SendLeaseRelease(*stub, lease_id, secret, reason);  // the lease also expires on its own
}

void CompletionRun::Settle() {
  bool release = false;
  bool report_cancel = false;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    const CompletionSettlement settlement = SettleCompletion(state_, absl::Now());
    release = settlement.release_lease;
    if (settlement.settle_again_at != absl::InfinitePast()) {
      auto self = shared_from_this();
      delayed_.RunAt(settlement.settle_again_at, [self] { self->Settle(); });
    }
    reason = state_.cancelled ? "client cancelled" : "request failed";
    report_cancel = settlement.report_cancel;
  }
  if (release) ReleaseLease(reason);
  if (report_cancel) Finish(absl::CancelledError("cancelled"));
}

void CompletionRun::FailBeforeDecode(const absl::Status& status, bool reserve_ended) {
  std::optional<WorkerView> cancel_on;
  uint64_t job_id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (reserve_ended) StepLocked(CompletionEvent::kReserveEnded);
    if (state_.prefill != PrefillPhase::kIdle && state_.request != RequestPhase::kFinished) {
      // Stop the prompt's compute; its call answers once no write is in flight.
      cancel_on = prefill_;
      job_id = job_id_;
    }
  }
  // Finished before the cancel goes out: the prefill call may answer CANCELLED at once, on
  // another thread, and must find the run over (else its CANCELLED would be reported instead
  // of `status`).
  Finish(status);
  if (cancel_on.has_value()) SendUpdate(*cancel_on, job_id, nullptr, std::string(status.message()));
  Settle();
}

void CompletionRun::Cancel() {
  std::optional<WorkerView> cancel_on;
  uint64_t job_id = 0;
  {
    absl::MutexLock lock(&mu_);
    const CompletionAction action = StepLocked(CompletionEvent::kCancel);
    if (action == CompletionAction::kIgnore) return;
    if (action == CompletionAction::kCancelDecode) {
      decode_reader_->Cancel();  // the decode worker frees the sequence's blocks
    } else if (action == CompletionAction::kCancelPrefill) {
      cancel_on = prefill_;
      job_id = job_id_;
    }
  }
  // The prefill answers CANCELLED once its writes are done; then the lease is freed.
  if (cancel_on.has_value()) SendUpdate(*cancel_on, job_id, nullptr, "cancelled by the client");
  Settle();
}

void CompletionRun::Finish(const absl::Status& status) {
  std::string decode_address;
  int64_t decode_blocks = 0;
  uint64_t watch = 0;
  {
    absl::MutexLock lock(&mu_);
    if (StepLocked(CompletionEvent::kFinish) == CompletionAction::kIgnore) return;
    decode_address = decode_.address;
    decode_blocks = decode_assigned_;
    watch = std::exchange(stall_watch_, 0);
  }
  if (watch != 0) workers_.UnwatchStall(watch);
  // Its blocks are free (or cached) again once the request ends.
  if (!decode_address.empty()) workers_.NoteDone(decode_address, decode_blocks);
  on_done_(status);
}

}  // namespace dsv3::router
