#include "transport/ucx/ucx_expert_server.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "experts/dispatch_plan.h"
#include "transport/ucx/ucx_expert_wire.h"

namespace dsv3::transport {

struct UcxExpertServer::Inbox {
  void Push(std::unique_ptr<ExpertDispatch> d) {
    absl::MutexLock lock(&mu);
    if (!shutdown) queue.push_back(std::move(d));
  }
  absl::Mutex mu;
  std::deque<std::unique_ptr<ExpertDispatch>> queue ABSL_GUARDED_BY(mu);
  bool shutdown ABSL_GUARDED_BY(mu) = false;
};

namespace {

struct ReplyHold {
  CombineHeader header;
  std::shared_ptr<const void> keep_alive;  // owns the outputs being sent
  std::string error;
  UcxContext* context = nullptr;
};

void OnReplySent(void* request, ucs_status_t, void* user_data) {
  auto* hold = static_cast<ReplyHold*>(user_data);
  hold->context->EndOperation();
  delete hold;
  ucp_request_free(request);
}

}  // namespace

absl::StatusOr<std::unique_ptr<UcxExpertServer>> UcxExpertServer::Create(UcxContext& context,
                                                                         int32_t worker_index) {
  std::unique_ptr<UcxExpertServer> server(new UcxExpertServer(context, worker_index));
  server->inbox_ = std::make_shared<Inbox>();
  DSV3_RETURN_IF_ERROR(
      context.SetAmHandler(kExpertDispatchAmId, &UcxExpertServer::OnDispatch, server.get()));
  return server;
}

UcxExpertServer::~UcxExpertServer() {
  (void)context_.SetAmHandler(kExpertDispatchAmId, nullptr, nullptr);
  Shutdown();
}

absl::StatusOr<uint32_t> UcxExpertServer::AddMember(const std::string& ucx_address) {
  DSV3_ASSIGN_OR_RETURN(std::shared_ptr<UcxPeer> peer, peers_.Get(ucx_address));
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < member_addresses_.size(); ++i) {
    if (member_addresses_[i] == ucx_address) {
      members_[i] = peer;  // a re-join: same member, fresh endpoint if the old one failed
      return static_cast<uint32_t>(i);
    }
  }
  members_.push_back(peer);
  member_addresses_.push_back(ucx_address);
  return static_cast<uint32_t>(members_.size() - 1);
}

int64_t UcxExpertServer::members() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(members_.size());
}

ucs_status_t UcxExpertServer::OnDispatch(void* arg, const void* header, size_t header_length,
                                         void* data, size_t length,
                                         const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxExpertServer*>(arg);
  if (self == nullptr || header_length != sizeof(DispatchHeader)) return UCS_OK;
  DispatchHeader h;
  std::memcpy(&h, header, sizeof(h));
  if (h.magic != kExpertWireMagic) return UCS_OK;
  auto d = std::make_unique<ExpertDispatch>();
  d->member = h.member;
  d->call_id = h.call_id;
  d->layer = h.layer;
  d->placement_version = h.placement_version;
  d->rows = h.rows;
  d->pairs = h.pairs;
  d->hidden = h.hidden;
  d->payload_bytes = static_cast<int64_t>(length);
  d->arrived = absl::Now();
  d->pool = self->pool_;
  d->buffer = self->pool_->Take((length + sizeof(float) - 1) / sizeof(float));
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    if (length > 0) std::memcpy(d->buffer.data(), data, length);
    self->inbox_->Push(std::move(d));
    return UCS_OK;
  }
  // Rendezvous: into the pooled buffer; queued once it is in (a member that died
  // mid-transfer is dropped: nobody waits for its answer).
  // Rendezvous: into the pooled buffer, queued once it is in (a member that died
  // mid-transfer is dropped: nobody waits for its answer).
  void* buffer = d->buffer.data();
  self->context_.ReceiveAmData(
      data, buffer, length, [inbox = self->inbox_, d = std::move(d)](absl::Status status) mutable {
        if (status.ok()) inbox->Push(std::move(d));
      });
  return UCS_OK;
}

std::vector<std::unique_ptr<ExpertDispatch>> UcxExpertServer::Take(absl::Duration wait) {
  std::vector<std::unique_ptr<ExpertDispatch>> out;
  Inbox& in = *inbox_;
  absl::MutexLock lock(&in.mu);
  auto ready = [&in]()
                   ABSL_SHARED_LOCKS_REQUIRED(in.mu) { return in.shutdown || !in.queue.empty(); };
  in.mu.AwaitWithTimeout(absl::Condition(&ready), wait);
  while (!in.queue.empty()) {
    out.push_back(std::move(in.queue.front()));
    in.queue.pop_front();
  }
  return out;
}

void UcxExpertServer::Shutdown() {
  absl::MutexLock lock(&inbox_->mu);
  inbox_->shutdown = true;
  inbox_->queue.clear();
}

void UcxExpertServer::Reply(const ExpertDispatch& dispatch, const absl::Status& status,
                            std::shared_ptr<const void> keep_alive, const float* outputs,
                            int64_t placement_version) {
  std::shared_ptr<UcxPeer> peer;
  {
    absl::MutexLock lock(&mu_);
    if (dispatch.member < members_.size()) peer = members_[dispatch.member];
  }
  if (peer == nullptr || peer->failed()) return;  // the member left; nobody is waiting
  auto* hold = new ReplyHold;
  hold->context = &context_;
  hold->header.worker_index = worker_index_;
  hold->header.call_id = dispatch.call_id;
  hold->header.placement_version = placement_version;
  hold->header.status_code = static_cast<int32_t>(status.code());
  hold->header.pairs = static_cast<int32_t>(dispatch.pairs);
  hold->header.hidden = static_cast<int32_t>(dispatch.hidden);
  const void* payload = outputs;
  size_t bytes = sizeof(float) * static_cast<size_t>(dispatch.pairs * dispatch.hidden);
  if (status.ok()) {
    hold->keep_alive = std::move(keep_alive);
  } else {
    hold->error = std::string(status.message());
    payload = hold->error.data();
    bytes = hold->error.size();
  }
  // Posted from the progress thread: there a large send pipelines with the member's
  // receive (see UcxContext::RunOnProgressThread).
  const bool eager = !status.ok();  // error texts go eagerly: the client reads them in its handler
  context_.RunOnProgressThread([peer = std::move(peer), hold, payload, bytes, eager] {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = OnReplySent;
    param.user_data = hold;
    if (eager) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = UCP_AM_SEND_FLAG_EAGER;
    }
    absl::StatusOr<ucs_status_ptr_t> r = peer->Post([&](ucp_ep_h ep) {
      return ucp_am_send_nbx(ep, kExpertCombineAmId, &hold->header, sizeof(hold->header), payload,
                             bytes, &param);
    });
    if (!r.ok() || *r == nullptr || UCS_PTR_IS_ERR(*r)) {
      delete hold;
      return;
    }
    hold->context->BeginOperation();  // ended by OnReplySent
  });
}

}  // namespace dsv3::transport
