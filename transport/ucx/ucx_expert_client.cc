#include "transport/ucx/ucx_expert_client.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "transport/ucx/ucx_expert_wire.h"

namespace dsv3::transport {

struct UcxExpertClient::Call {
  explicit Call(size_t workers)
      : waiting(workers, 0), expected_pairs(workers, 0), outputs(workers), errors(workers) {}

  // Records worker w's answer (or failure); the first one per worker counts.
  void Finish(int32_t w, absl::Status status) {
    absl::MutexLock lock(&mu);
    if (w < 0 || static_cast<size_t>(w) >= waiting.size() || !waiting[static_cast<size_t>(w)]) {
      return;
    }
    waiting[static_cast<size_t>(w)] = 0;
    errors[static_cast<size_t>(w)] = std::move(status);
    --remaining;
  }

  absl::Mutex mu;
  int remaining ABSL_GUARDED_BY(mu) = 0;
  std::vector<char> waiting ABSL_GUARDED_BY(mu);  // per worker: an answer is due
  std::vector<int64_t> expected_pairs;            // per worker, set before sending
  // Written by the progress thread (or a rendezvous receive) before Finish; read by the
  // caller only once every answer is in.
  std::vector<experts::FloatBuffer> outputs;
  std::vector<absl::Status> errors ABSL_GUARDED_BY(mu);
  std::atomic<int64_t> newest_version{0};
  int64_t hidden = 0;
};

namespace {

// What a dispatch send keeps alive until UCX is done with it.
struct SendHold {
  DispatchHeader header;
  experts::FloatBuffer payload;  // from the pool, given back when sent
  size_t payload_bytes = 0;
  std::shared_ptr<FloatBufferPool> pool;
  std::shared_ptr<UcxExpertClient::Call> call;
  int32_t worker = 0;
  UcxContext* context = nullptr;
};

void OnSendDone(void* request, ucs_status_t status, void* user_data) {
  auto* hold = static_cast<SendHold*>(user_data);
  if (status != UCS_OK) {
    hold->call->Finish(hold->worker,
                       UcxError(status, absl::StrCat("dispatch to expert worker ", hold->worker)));
  }
  hold->context->EndOperation();
  hold->pool->Give(std::move(hold->payload));
  delete hold;
  ucp_request_free(request);
}

}  // namespace

absl::StatusOr<std::unique_ptr<UcxExpertClient>> UcxExpertClient::Create(UcxContext& context) {
  std::unique_ptr<UcxExpertClient> client(new UcxExpertClient(context));
  DSV3_RETURN_IF_ERROR(
      context.SetAmHandler(kExpertCombineAmId, &UcxExpertClient::OnCombine, client.get()));
  return client;
}

UcxExpertClient::~UcxExpertClient() {
  // No handler call can start after this returns (handlers run under the worker's lock).
  (void)context_.SetAmHandler(kExpertCombineAmId, nullptr, nullptr);
}

absl::Status UcxExpertClient::Connect(int32_t worker, const std::string& ucx_address,
                                      uint32_t member) {
  if (worker < 0) return absl::InvalidArgumentError("negative expert worker index");
  DSV3_ASSIGN_OR_RETURN(std::shared_ptr<UcxPeer> peer, peers_.Get(ucx_address));
  absl::MutexLock lock(&mu_);
  if (links_.size() <= static_cast<size_t>(worker)) links_.resize(static_cast<size_t>(worker) + 1);
  links_[static_cast<size_t>(worker)] = Link{peer, member};
  return absl::OkStatus();
}

void UcxExpertClient::Disconnect(int32_t worker) {
  absl::MutexLock lock(&mu_);
  if (worker >= 0 && static_cast<size_t>(worker) < links_.size()) {
    links_[static_cast<size_t>(worker)] = Link{};
  }
}

bool UcxExpertClient::connected(int32_t worker) const {
  absl::MutexLock lock(&mu_);
  return worker >= 0 && static_cast<size_t>(worker) < links_.size() &&
         links_[static_cast<size_t>(worker)].peer != nullptr &&
         !links_[static_cast<size_t>(worker)].peer->failed();
}

ucs_status_t UcxExpertClient::OnCombine(void* arg, const void* header, size_t header_length,
                                        void* data, size_t length,
                                        const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxExpertClient*>(arg);
  if (self == nullptr || header_length != sizeof(CombineHeader)) return UCS_OK;
  CombineHeader h;
  std::memcpy(&h, header, sizeof(h));
  if (h.magic != kExpertWireMagic) return UCS_OK;
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&self->mu_);
    auto it = self->calls_.find(h.call_id);
    if (it == self->calls_.end()) return UCS_OK;  // the caller gave up on it: drop
    call = it->second;
  }
  const int32_t w = h.worker_index;
  if (w < 0 || static_cast<size_t>(w) >= call->expected_pairs.size()) return UCS_OK;
  int64_t newest = call->newest_version.load();
  while (h.placement_version > newest &&
         !call->newest_version.compare_exchange_weak(newest, h.placement_version)) {
  }
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  if (h.status_code != 0) {
    std::string text = rndv ? std::string("(error text not received)")
                            : std::string(static_cast<const char*>(data), length);
    call->Finish(w, absl::Status(static_cast<absl::StatusCode>(h.status_code),
                                 absl::StrCat("expert worker ", w, ": ", text)));
    return UCS_OK;
  }
  const size_t want = sizeof(float) * static_cast<size_t>(call->expected_pairs[w]) *
                      static_cast<size_t>(call->hidden);
  if (h.pairs != call->expected_pairs[w] || h.hidden != call->hidden || length != want) {
    call->Finish(w, absl::InternalError(absl::StrCat(
                        "expert worker ", w, " answered ", h.pairs, " pairs of hidden ", h.hidden,
                        " (", length, " bytes) where ", call->expected_pairs[w], " were sent")));
    return UCS_OK;
  }
  experts::FloatBuffer& out = call->outputs[static_cast<size_t>(w)];
  out = self->pool_->Take(static_cast<size_t>(call->expected_pairs[w] * call->hidden));
  if (!rndv) {
    if (length > 0) std::memcpy(out.data(), data, length);
    call->Finish(w, absl::OkStatus());
    return UCS_OK;
  }
  // Rendezvous: receive straight into the output buffer.
  self->context_.ReceiveAmData(data, out.data(), length, [call, w](absl::Status status) {
    call->Finish(w, status.ok() ? absl::OkStatus()
                                : absl::UnavailableError(absl::StrCat("combine from expert worker ",
                                                                      w, ": ", status.message())));
  });
  return UCS_OK;
}

ExchangeResult UcxExpertClient::Exchange(const ExchangeRequest& request,
                                         absl::FunctionRef<void()> overlapped) {
  ExchangeResult result;
  const experts::DispatchPlan& plan = *request.plan;
  const size_t workers = plan.destinations.size();
  auto call = std::make_shared<Call>(workers);
  call->hidden = request.hidden;
  const uint64_t call_id = next_call_.fetch_add(1);
  std::vector<std::pair<int32_t, Link>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (size_t w = 0; w < workers; ++w) {
      const int64_t pairs = plan.destinations[w].num_pairs();
      if (pairs == 0) continue;
      const Link* link = w < links_.size() ? &links_[w] : nullptr;
      if (link == nullptr || link->peer == nullptr || link->peer->failed()) {
        result.failed_workers.push_back(static_cast<int32_t>(w));
        continue;
      }
      call->expected_pairs[w] = pairs;
      targets.emplace_back(static_cast<int32_t>(w), *link);
    }
    if (result.failed_workers.empty()) calls_[call_id] = call;
  }
  if (!result.failed_workers.empty()) {
    overlapped();
    result.status =
        absl::UnavailableError(absl::StrCat("expert worker ", result.failed_workers.front(),
                                            " is not connected (layer ", request.layer, ")"));
    return result;
  }
  {
    absl::MutexLock lock(&call->mu);
    for (const auto& [w, link] : targets) {
      call->waiting[static_cast<size_t>(w)] = 1;
      ++call->remaining;
    }
  }
  // Poll the worker while answers are due (no event fd wake-up on the critical path).
  context_.BeginOperation();
  for (const auto& [w, link] : targets) {
    const experts::DispatchPlan::Destination& d = plan.destinations[static_cast<size_t>(w)];
    auto* hold = new SendHold;
    hold->call = call;
    hold->worker = w;
    hold->context = &context_;
    hold->header.member = link.member;
    hold->header.call_id = call_id;
    hold->header.placement_version = request.placement_version;
    hold->header.layer = static_cast<int32_t>(request.layer);
    hold->header.rows = static_cast<int32_t>(d.rows.size());
    hold->header.pairs = static_cast<int32_t>(d.num_pairs());
    hold->header.hidden = static_cast<int32_t>(request.hidden);
    hold->pool = pool_;
    hold->payload_bytes = static_cast<size_t>(experts::DispatchPayloadBytes(
        static_cast<int64_t>(d.rows.size()), d.num_pairs(), request.hidden));
    hold->payload = pool_->Take((hold->payload_bytes + sizeof(float) - 1) / sizeof(float));
    experts::PackDispatch(d, request.x, request.hidden,
                          reinterpret_cast<uint8_t*>(hold->payload.data()));
    // Posted from the progress thread, where a large send pipelines with the expert
    // worker's receive (UcxContext::RunOnProgressThread).
    context_.RunOnProgressThread([hold, peer = link.peer, w = w] {
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      param.cb.send = OnSendDone;
      param.user_data = hold;
      absl::StatusOr<ucs_status_ptr_t> r = peer->Post([&](ucp_ep_h ep) {
        return ucp_am_send_nbx(ep, kExpertDispatchAmId, &hold->header, sizeof(hold->header),
                               hold->payload.data(), hold->payload_bytes, &param);
      });
      if (r.ok() && *r != nullptr && !UCS_PTR_IS_ERR(*r)) {
        hold->context->BeginOperation();  // ended by OnSendDone
        return;
      }
      absl::Status error =
          !r.ok() ? r.status()
          : *r == nullptr
              ? absl::OkStatus()  // sent in place
              : UcxError(UCS_PTR_STATUS(*r), absl::StrCat("dispatch to expert worker ", w));
      hold->pool->Give(std::move(hold->payload));
      if (!error.ok()) hold->call->Finish(w, std::move(error));
      delete hold;
    });
  }
  context_.Wake();
  overlapped();

  // Wait for every answer; a worker whose endpoint fails is given up at once.
  {
    absl::MutexLock lock(&call->mu);
    auto all_in = [&call]() ABSL_SHARED_LOCKS_REQUIRED(call->mu) { return call->remaining == 0; };
    while (call->remaining > 0) {
      const absl::Time now = absl::Now();
      if (now >= request.deadline) break;
      call->mu.AwaitWithDeadline(absl::Condition(&all_in),
                                 std::min(request.deadline, now + absl::Milliseconds(2)));
      for (const auto& [w, link] : targets) {
        if (call->waiting[static_cast<size_t>(w)] && link.peer->failed()) {
          call->waiting[static_cast<size_t>(w)] = 0;
          call->errors[static_cast<size_t>(w)] = link.peer->health();
          --call->remaining;
        }
      }
    }
    for (const auto& [w, link] : targets) {
      if (!call->waiting[static_cast<size_t>(w)]) continue;
      call->waiting[static_cast<size_t>(w)] = 0;
      call->errors[static_cast<size_t>(w)] = absl::DeadlineExceededError(absl::StrCat(
          "expert worker ", w, " did not answer layer ", request.layer, " by the deadline"));
      --call->remaining;
    }
  }
  context_.EndOperation();
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(call_id);
  }
  result.newest_placement_version = call->newest_version.load();
  std::vector<std::shared_ptr<UcxPeer>> silent;  // closed below, outside call->mu (a forced
                                                 // close runs send completions that take it)
  {
    absl::MutexLock lock(&call->mu);
    for (const auto& [w, link] : targets) {
      const absl::Status& e = call->errors[static_cast<size_t>(w)];
      if (e.ok()) continue;
      // Transport failures (peer gone, no answer) make the worker down; an answer with an
      // error (e.g. an expert it does not hold) is the request's failure only.
      const bool transport = absl::IsUnavailable(e) || absl::IsDeadlineExceeded(e) ||
                             absl::IsInternal(e) || absl::IsCancelled(e);
      if (transport) {
        result.failed_workers.push_back(w);
        if (absl::IsDeadlineExceeded(e)) silent.push_back(link.peer);
      }
      if (result.status.ok()) {
        result.status =
            transport
                ? absl::UnavailableError(absl::StrCat("expert worker ", w, " failed during layer ",
                                                      request.layer, ": ", e.message()))
                : e;
      }
    }
  }
  for (const std::shared_ptr<UcxPeer>& peer : silent) {
    peer->MarkFailed(absl::UnavailableError("expert worker did not answer by the deadline"));
  }
  if (result.status.ok()) result.outputs = std::move(call->outputs);
  return result;
}

}  // namespace dsv3::transport
