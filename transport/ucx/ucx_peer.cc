#include "transport/ucx/ucx_peer.h"

#include "absl/strings/str_cat.h"

namespace dsv3::transport {
namespace {

constexpr absl::Duration kConnectTimeout = absl::Seconds(5);

// Completion of a put or flush: record the status, release the request and the state.
void OnSendComplete(void* request, ucs_status_t status, void* user_data) {
  auto* ref = static_cast<std::shared_ptr<PutBatch::State>*>(user_data);
  {
    absl::MutexLock lock(&(*ref)->mu);
    if (status != UCS_OK && (*ref)->first_error.ok()) {
      (*ref)->first_error = UcxError(status, "UCX put/flush");
    }
    --(*ref)->pending;
  }
  (*ref)->context->EndOperation();
  delete ref;
  ucp_request_free(request);
}

// Waits for a request of ep_close_nbx to finish (the progress thread drives it).
void WaitForClose(ucs_status_ptr_t request) {
  if (request == nullptr || UCS_PTR_IS_ERR(request)) return;
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (ucp_request_check_status(request) == UCS_INPROGRESS && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ucp_request_free(request);
}

}  // namespace

PutBatch::PutBatch(std::shared_ptr<UcxPeer> peer)
    : peer_(std::move(peer)), state_(std::make_shared<State>(&peer_->context())) {}

PutBatch::~PutBatch() = default;

absl::Status PutBatch::Post(ucs_status_ptr_t request_or_status,
                            const std::shared_ptr<State>& holder,
                            std::shared_ptr<State>* callback_ref, const char* what) {
  if (request_or_status == nullptr) {  // completed in place; no callback will come
    delete callback_ref;
    absl::MutexLock lock(&holder->mu);
    --holder->pending;
    return absl::OkStatus();
  }
  if (UCS_PTR_IS_ERR(request_or_status)) {
    delete callback_ref;
    absl::MutexLock lock(&holder->mu);
    --holder->pending;
    absl::Status error = UcxError(UCS_PTR_STATUS(request_or_status), what);
    if (holder->first_error.ok()) holder->first_error = error;
    return error;
  }
  // In flight: the callback owns callback_ref now, and ends the operation. (It may have run
  // already on the progress thread; the count is then briefly negative, which is harmless.)
  holder->context->BeginOperation();
  return absl::OkStatus();
}

absl::Status PutBatch::Put(const void* local, size_t length, uint64_t remote_address,
                           ucp_rkey_h rkey) {
  {
    absl::MutexLock lock(&state_->mu);
    if (!state_->first_error.ok()) return state_->first_error;
    ++state_->pending;  // before posting: the callback may run at once on another thread
  }
  auto* ref = new std::shared_ptr<State>(state_);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = OnSendComplete;
  param.user_data = ref;
  absl::StatusOr<ucs_status_ptr_t> r = peer_->Post(
      [&](ucp_ep_h ep) { return ucp_put_nbx(ep, local, length, remote_address, rkey, &param); });
  if (!r.ok()) r = UCS_STATUS_PTR(UCS_ERR_CANCELED);
  bytes_ += static_cast<int64_t>(length);
  absl::Status posted = Post(*r, state_, ref, "ucp_put_nbx");
  if (!r.ok() || !posted.ok()) return peer_->failed() ? peer_->health() : posted;
  return absl::OkStatus();
}

absl::Status PutBatch::Flush(absl::Time deadline, const std::function<absl::Status()>& still_there,
                             absl::Duration check_every) {
  if (!peer_->failed()) {
    {
      absl::MutexLock lock(&state_->mu);
      ++state_->pending;
    }
    auto* ref = new std::shared_ptr<State>(state_);
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = OnSendComplete;
    param.user_data = ref;
    absl::StatusOr<ucs_status_ptr_t> r =
        peer_->Post([&](ucp_ep_h ep) { return ucp_ep_flush_nbx(ep, &param); });
    (void)Post(r.ok() ? *r : UCS_STATUS_PTR(UCS_ERR_CANCELED), state_, ref, "ucp_ep_flush_nbx");
    peer_->context().Wake();
  }
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(state_->mu) {
    return state_->pending == 0 || peer_->failed();
  };
  absl::Status gone;  // what `still_there` said
  int64_t pending = 0;
  while (true) {
    const absl::Time until = still_there ? std::min(deadline, absl::Now() + check_every) : deadline;
    absl::MutexLock lock(&state_->mu);
    state_->mu.AwaitWithDeadline(absl::Condition(&done), until);
    if (state_->pending == 0 && !peer_->failed()) return state_->first_error;
    pending = state_->pending;
    if (peer_->failed() || absl::Now() >= deadline || !still_there) break;
    state_->mu.Unlock();  // ask without holding the lock the callbacks need
    gone = still_there();
    state_->mu.Lock();
    if (!gone.ok()) {
      // The flush may have completed while we asked.
      if (state_->pending == 0 && !peer_->failed()) return state_->first_error;
      break;
    }
  }
  absl::Status error = peer_->failed() ? peer_->health() : gone;
  if (error.ok()) {
    error = absl::DeadlineExceededError(absl::StrCat("UCX transfer not complete by its deadline (",
                                                     pending, " operations outstanding)"));
  }
  // Closing the endpoint completes the outstanding requests (with errors); their
  // callbacks hold the state alive until then.
  peer_->MarkFailed(error);
  return error;
}

void UcxPeer::OnError(void* arg, ucp_ep_h, ucs_status_t status) {
  static_cast<UcxPeer*>(arg)->RecordFailure(UcxError(status, "UCX peer failed"));
}

void UcxPeer::RecordFailure(absl::Status status) {
  absl::MutexLock lock(&failure_mu_);
  if (failure_.ok()) failure_ = status;
  failed_.store(true, std::memory_order_release);
}

void UcxPeer::MarkFailed(absl::Status status) {
  RecordFailure(status);
  // Exclusive: no Post is using the endpoint while it goes away.
  absl::MutexLock lock(&mu_);
  if (closed_ || ep_ == nullptr) return;
  closed_ = true;
  if (stale()) return;
  // Forced close (peer error mode) fails every outstanding operation now; their
  // completions run inside this call. Not waited for: the progress thread finishes it.
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = context_.options().peer_error_handling ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t r = ucp_ep_close_nbx(ep_, &param);
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) ucp_request_free(r);
  context_.Wake();
}

absl::StatusOr<ucs_status_ptr_t> UcxPeer::Post(absl::FunctionRef<ucs_status_ptr_t(ucp_ep_h)> post) {
  absl::ReaderMutexLock lock(&mu_);
  if (failed()) return health();
  if (closed_ || ep_ == nullptr) return absl::UnavailableError("UCX endpoint closed");
  return post(ep_);
}

absl::Status UcxPeer::health() const {
  {
    absl::MutexLock lock(&failure_mu_);
    if (!failure_.ok()) return failure_;
  }
  if (stale()) {
    return absl::UnavailableError(
        "UCX endpoint made on a worker since replaced (its shared-memory queue stopped)");
  }
  return absl::OkStatus();
}

absl::StatusOr<ucp_rkey_h> UcxPeer::Rkey(const std::string& packed_rkey) {
  absl::MutexLock lock(&mu_);
  if (failed()) return health();
  if (closed_) return absl::UnavailableError("UCX endpoint closed");
  auto it = rkeys_.find(packed_rkey);
  if (it != rkeys_.end()) return it->second;
  ucp_rkey_h rkey = nullptr;
  ucs_status_t status = ucp_ep_rkey_unpack(ep_, packed_rkey.data(), &rkey);
  if (status != UCS_OK) return UcxError(status, "ucp_ep_rkey_unpack");
  rkeys_.emplace(packed_rkey, rkey);
  return rkey;
}

UcxPeer::~UcxPeer() {
  // Nothing else references the peer now: no lock is contended.
  ucp_ep_h ep = nullptr;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [packed, rkey] : rkeys_) ucp_rkey_destroy(rkey);
    rkeys_.clear();
    if (!closed_) {
      closed_ = true;
      if (!stale()) ep = ep_;
    }
  }
  if (ep != nullptr) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = context_.options().peer_error_handling ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    WaitForClose(ucp_ep_close_nbx(ep, &param));
  }
}

absl::StatusOr<std::shared_ptr<UcxPeer>> UcxPeerCache::Get(const std::string& worker_address) {
  if (worker_address.empty()) return absl::InvalidArgumentError("empty UCX worker address");
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(worker_address);
  if (it != peers_.end()) {
    if (it->second->health().ok()) return it->second;
    peers_.erase(it);  // failed: connect afresh
  }
  // Twice at most: a connection that the worker's replacement (shared memory, see
  // ucx_context.h) cut short is made again on the new worker.
  for (int attempt = 0;; ++attempt) {
    // The generation before the worker: a replacement between the two reads leaves an
    // endpoint on the new worker that counts as stale, never the reverse.
    const uint64_t generation = context_.generation();
    ucp_worker_h worker = context_.worker();
    std::shared_ptr<UcxPeer> peer(new UcxPeer(context_, worker_address, generation));
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                        UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.address = reinterpret_cast<const ucp_address_t*>(peer->address_.data());
    params.err_mode = context_.options().peer_error_handling ? UCP_ERR_HANDLING_MODE_PEER
                                                             : UCP_ERR_HANDLING_MODE_NONE;
    params.err_handler.cb = &UcxPeer::OnError;
    params.err_handler.arg = peer.get();
    ucp_ep_h ep = nullptr;
    ucs_status_t status = ucp_ep_create(worker, &params, &ep);
    {
      absl::MutexLock peer_lock(&peer->mu_);
      peer->ep_ = ep;
      if (status != UCS_OK) peer->closed_ = true;  // nothing to close
    }
    if (status != UCS_OK) {
      return UcxError(status, "ucp_ep_create (is the peer's worker address valid?)");
    }
    // Complete the wire-up on both sides now, while nothing else is in flight: it tells an
    // unreachable peer at once, and (UCX 1.13) a peer whose endpoint fails while its
    // wire-up reply is still queued aborts inside UCX.
    if (absl::Status s = context_.Ping(worker, ep, absl::Now() + kConnectTimeout); !s.ok()) {
      peer->MarkFailed(s);
      if (peer->stale() && attempt == 0) continue;
      return absl::UnavailableError(absl::StrCat("cannot reach UCX peer: ", s.message()));
    }
    peers_[worker_address] = peer;
    return peer;
  }
}

size_t UcxPeerCache::size() const {
  absl::MutexLock lock(&mu_);
  return peers_.size();
}

UcxPeerCache::~UcxPeerCache() {
  absl::MutexLock lock(&mu_);
  peers_.clear();
}

}  // namespace dsv3::transport
