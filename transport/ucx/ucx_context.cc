#include "transport/ucx/ucx_context.h"

#include <poll.h>
#include <sched.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsv3::transport {
namespace {

// Active message ids used by the context itself.
constexpr unsigned kPingAmId = 1;
constexpr unsigned kPongAmId = 2;
constexpr unsigned kProbeAmId = 3;

// The shared-memory probe (ucx_context.h): one every kProbeEvery; a ring that has not
// delivered it after kProbeTimeout and kProbeMinRounds of progress has stopped.
constexpr absl::Duration kProbeEvery = absl::Milliseconds(250);
constexpr absl::Duration kProbeTimeout = absl::Seconds(2);
constexpr int64_t kProbeMinRounds = 2000;

void FreeRequest(void* request, ucs_status_t, void*) { ucp_request_free(request); }

struct AmReceive {
  UcxContext* context;
  absl::AnyInvocable<void(absl::Status)> done;
};

void OnAmReceived(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* r = static_cast<AmReceive*>(user_data);
  r->context->EndOperation();
  std::move(r->done)(status == UCS_OK ? absl::OkStatus()
                                      : UcxError(status, "active message rendezvous receive"));
  delete r;
  ucp_request_free(request);
}

}  // namespace

absl::Status UcxError(ucs_status_t status, const std::string& what) {
  std::string message = absl::StrCat(what, ": ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CANCELED:
      return absl::UnavailableError(message);
    case UCS_ERR_TIMED_OUT:
      return absl::DeadlineExceededError(message);
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return absl::ResourceExhaustedError(message);
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<UcxContext>> UcxContext::Create(const UcxOptions& options) {
  std::unique_ptr<UcxContext> ctx(new UcxContext(options));

  ucp_config_t* config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK) return UcxError(status, "ucp_config_read");
  if (!options.transports.empty()) {
    status = ucp_config_modify(config, "TLS", options.transports.c_str());
  }
  if (status == UCS_OK && !options.net_devices.empty()) {
    status = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
  }
  if (status != UCS_OK) {
    ucp_config_release(config);
    return UcxError(status, "ucp_config_modify");
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  status = ucp_init(&params, config, &ctx->context_);
  ucp_config_release(config);
  if (status != UCS_OK) return UcxError(status, "ucp_init");

  {
    absl::MutexLock lock(&ctx->worker_mu_);
    ctx->handlers_[kPingAmId] = {&UcxContext::OnPing, ctx.get()};
    ctx->handlers_[kPongAmId] = {&UcxContext::OnPong, ctx.get()};
    ctx->handlers_[kProbeAmId] = {&UcxContext::OnProbe, ctx.get()};
    ucp_worker_h worker = nullptr;
    if (absl::Status s = ctx->NewWorker(&worker, &ctx->address_); !s.ok()) return s;
    ctx->worker_.store(worker, std::memory_order_release);
    status = ucp_worker_get_efd(worker, &ctx->event_fd_);
    if (status != UCS_OK) return UcxError(status, "ucp_worker_get_efd");
  }
  if (!options.peer_error_handling) {
    if (absl::Status s = ctx->NewProbe(ctx->worker_address()); !s.ok()) return s;
  }

  ctx->progress_thread_ = std::thread([raw = ctx.get()] { raw->ProgressLoop(); });
  return ctx;
}

absl::Status UcxContext::NewWorker(ucp_worker_h* worker, std::string* address) {
  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  // Puts are posted from compute threads while the progress thread runs.
  worker_params.thread_mode = UCS_THREAD_MODE_MULTI;
  ucs_status_t status = ucp_worker_create(context_, &worker_params, worker);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_create");
  auto fail = [&](ucs_status_t s, const char* what) {
    ucp_worker_destroy(*worker);
    *worker = nullptr;
    return UcxError(s, what);
  };
  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  if (ucp_worker_query(*worker, &attr) == UCS_OK && attr.thread_mode != UCS_THREAD_MODE_MULTI) {
    ucp_worker_destroy(*worker);
    *worker = nullptr;
    return absl::FailedPreconditionError("UCX worker does not support UCS_THREAD_MODE_MULTI");
  }
  ucp_address_t* raw = nullptr;
  size_t length = 0;
  status = ucp_worker_get_address(*worker, &raw, &length);
  if (status != UCS_OK) return fail(status, "ucp_worker_get_address");
  address->assign(reinterpret_cast<const char*>(raw), length);
  ucp_worker_release_address(*worker, raw);
  for (const auto& [id, handler] : handlers_) {
    ucp_am_handler_param_t param{};
    param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG;
    param.id = id;
    param.cb = handler.callback;
    param.arg = handler.arg;
    status = ucp_worker_set_am_recv_handler(*worker, &param);
    if (status != UCS_OK) return fail(status, "ucp_worker_set_am_recv_handler");
  }
  return absl::OkStatus();
}

absl::Status UcxContext::NewProbe(const std::string& address) {
  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;  // the progress thread's alone
  ucs_status_t status = ucp_worker_create(context_, &worker_params, &probe_worker_);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_create (probe)");
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  status = ucp_ep_create(probe_worker_, &params, &probe_ep_);
  if (status != UCS_OK) {
    ucp_worker_destroy(probe_worker_);
    probe_worker_ = nullptr;  // no probing: the loop skips it
    probe_ep_ = nullptr;
    return UcxError(status, "ucp_ep_create (probe)");
  }
  probe_sent_at_ = absl::Now();
  return absl::OkStatus();
}

void UcxContext::ProbeStep() {
  while (ucp_worker_progress(probe_worker_) != 0) {
  }
  const absl::Time now = absl::Now();
  if (probe_seen_.load(std::memory_order_acquire) == probe_header_) {
    if (now - probe_sent_at_ < kProbeEvery) return;
    ++probe_header_;
    probe_sent_at_ = now;
    probe_rounds_ = 0;
    ucp_request_param_t send{};
    send.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS;
    send.cb.send = FreeRequest;
    send.flags = UCP_AM_SEND_FLAG_EAGER;
    // An error leaves the probe unread: judged like a stopped ring.
    (void)ucp_am_send_nbx(probe_ep_, kProbeAmId, &probe_header_, sizeof(probe_header_), nullptr, 0,
                          &send);
    return;
  }
  // Rounds as well as time: a progress thread starved of CPU has not read its ring yet.
  if (++probe_rounds_ >= kProbeMinRounds && now - probe_sent_at_ >= kProbeTimeout) ReplaceWorker();
}

void UcxContext::ReplaceWorker() {
  ucp_worker_h fresh = nullptr;
  std::string address;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&worker_mu_);
    if (absl::Status s = NewWorker(&fresh, &address); !s.ok()) {
      std::fprintf(stderr, "UCX: cannot replace the stopped worker: %s\n", s.ToString().c_str());
      probe_sent_at_ = absl::Now();  // try again after another timeout
      return;
    }
    retired_.push_back(worker_.load(std::memory_order_relaxed));
    retired_.push_back(probe_worker_);
    worker_.store(fresh, std::memory_order_release);
    address_ = address;
    generation = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
  }
  // Requests on the old worker never complete now; they no longer keep this thread busy.
  outstanding_.store(0, std::memory_order_release);
  { absl::MutexLock wake_pings(&ping_mu_); }  // Ping's wait sees the new generation
  probe_worker_ = nullptr;
  probe_ep_ = nullptr;
  probe_seen_.store(probe_header_ = 0, std::memory_order_release);
  if (absl::Status s = NewProbe(address); !s.ok()) {
    std::fprintf(stderr, "UCX: no probe on the new worker: %s\n", s.ToString().c_str());
  }
  std::fprintf(stderr,
               "UCX: this worker's shared-memory receive queue stopped (a peer died while "
               "sending to it); moved to a new worker (generation %llu)\n",
               static_cast<unsigned long long>(generation));
  if (options_.on_worker_replaced) options_.on_worker_replaced(generation);
}

void UcxContext::ProgressLoop() {
  // With operations outstanding: poll, yielding the core between empty polls, for up to
  // kSpin after the last event; after that, sleep on the event fd in kBusyPoll steps (a
  // peer that stopped answering must not keep a core busy until its deadline). Idle: sleep
  // on the event fd; the timeout only bounds how long a missed wake-up could delay progress.
  constexpr absl::Duration kSpin = absl::Milliseconds(2);
  constexpr int kBusyPollMs = 1;
  constexpr int kIdlePollMs = 50;
  constexpr int64_t kShmIdleSleepUs = 200;
  absl::Time last_event = absl::InfinitePast();
  while (!stop_.load(std::memory_order_acquire)) {
    unsigned events = 0;
    if (has_tasks_.load(std::memory_order_acquire)) {
      std::vector<std::function<void()>> tasks;
      {
        absl::MutexLock lock(&tasks_mu_);
        tasks.swap(tasks_);
        has_tasks_.store(false, std::memory_order_release);
      }
      for (auto& task : tasks) task();
      events += static_cast<unsigned>(tasks.size());
    }
    ucp_worker_h worker = worker_.load(std::memory_order_acquire);
    while (unsigned n = ucp_worker_progress(worker)) events += n;
    if (probe_worker_ != nullptr) ProbeStep();
    const bool busy = outstanding_.load(std::memory_order_acquire) > 0;
    if (busy) {
      const absl::Time now = absl::Now();
      if (events > 0) last_event = now;
      if (now - last_event < kSpin) {
        sched_yield();
        continue;
      }
    }
    if (!options_.peer_error_handling) {
      // Shared memory only: after a peer died mid-transfer, UCX 1.13's ucp_worker_arm was
      // seen to block for good in a read of its event fd, and with it every later
      // connection (tests/integration/disaggregated_workers_test.cc, a killed decode
      // worker). Sleep briefly instead of arming: a ping or task waits at most this long.
      absl::SleepFor(busy ? absl::Microseconds(50) : absl::Microseconds(kShmIdleSleepUs));
      continue;
    }
    ucs_status_t status = ucp_worker_arm(worker);
    if (status == UCS_ERR_BUSY) continue;  // new events arrived meanwhile
    pollfd pfd{event_fd_, POLLIN, 0};
    if (poll(&pfd, 1, busy ? kBusyPollMs : kIdlePollMs) > 0) last_event = absl::Now();
  }
}

void UcxContext::BeginOperation() {
  if (outstanding_.fetch_add(1, std::memory_order_acq_rel) <= 0) Wake();
}

void UcxContext::EndOperation() { outstanding_.fetch_sub(1, std::memory_order_acq_rel); }

ucs_status_t UcxContext::OnPing(void*, const void* header, size_t header_length, void*, size_t,
                                const ucp_am_recv_param_t* param) {
  if (header_length != sizeof(uint64_t) || !(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) {
    return UCS_OK;  // not ours to answer
  }
  // Runs on the progress thread: post the answer and return; the header is copied by
  // UCX before the send completes (it is sent eagerly or buffered).
  ucp_request_param_t send{};
  send.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS;
  send.cb.send = FreeRequest;
  send.flags = UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r =
      ucp_am_send_nbx(param->reply_ep, kPongAmId, header, header_length, nullptr, 0, &send);
  (void)r;  // a request (if any) frees itself in FreeRequest; an error means the peer left
  return UCS_OK;
}

ucs_status_t UcxContext::OnProbe(void* arg, const void* header, size_t header_length, void*, size_t,
                                 const ucp_am_recv_param_t*) {
  if (header_length != sizeof(uint64_t)) return UCS_OK;
  uint64_t number;
  std::memcpy(&number, header, sizeof(number));
  static_cast<UcxContext*>(arg)->probe_seen_.store(number, std::memory_order_release);
  return UCS_OK;
}

ucs_status_t UcxContext::OnPong(void* arg, const void* header, size_t header_length, void*, size_t,
                                const ucp_am_recv_param_t*) {
  if (header_length != sizeof(uint64_t)) return UCS_OK;
  uint64_t token;
  std::memcpy(&token, header, sizeof(token));
  auto* self = static_cast<UcxContext*>(arg);
  absl::MutexLock lock(&self->ping_mu_);
  self->pongs_.insert(token);
  return UCS_OK;
}

absl::Status UcxContext::Ping(ucp_worker_h worker, ucp_ep_h ep, absl::Time deadline) {
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  uint64_t token;
  {
    absl::MutexLock lock(&ping_mu_);
    token = next_ping_++;
  }
  ucp_request_param_t send{};
  send.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  send.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = ucp_am_send_nbx(ep, kPingAmId, &token, sizeof(token), nullptr, 0, &send);
  if (UCS_PTR_IS_ERR(r)) return UcxError(UCS_PTR_STATUS(r), "UCX ping");
  Wake();
  bool answered = false;
  {
    absl::MutexLock lock(&ping_mu_);
    auto arrived = [this, token, generation]() ABSL_SHARED_LOCKS_REQUIRED(ping_mu_) {
      return pongs_.contains(token) || generation_.load(std::memory_order_acquire) != generation;
    };
    answered =
        ping_mu_.AwaitWithDeadline(absl::Condition(&arrived), deadline) && pongs_.contains(token);
    pongs_.erase(token);
  }
  if (r != nullptr) {
    // The send itself: done by now if the answer came; otherwise give it a moment.
    while (ucp_request_check_status(r) == UCS_INPROGRESS && absl::Now() < deadline) {
      absl::SleepFor(absl::Microseconds(100));
    }
    if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker, r);
    ucp_request_free(r);
  }
  if (!answered && generation_.load(std::memory_order_acquire) != generation) {
    return absl::UnavailableError("UCX worker replaced during the connection ping");
  }
  if (!answered) return absl::UnavailableError("UCX peer did not answer the connection ping");
  return absl::OkStatus();
}

absl::Status UcxContext::SetAmHandler(unsigned id, ucp_am_recv_callback_t callback, void* arg) {
  if (id < 8) return absl::InvalidArgumentError("active message ids below 8 are reserved");
  absl::MutexLock lock(&worker_mu_);
  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = id;
  handler.cb = callback;
  handler.arg = arg;
  ucs_status_t status =
      ucp_worker_set_am_recv_handler(worker_.load(std::memory_order_relaxed), &handler);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_set_am_recv_handler");
  if (callback == nullptr) {
    handlers_.erase(id);
  } else {
    handlers_[id] = {callback, arg};
  }
  return absl::OkStatus();
}

std::string UcxContext::worker_address() const {
  absl::MutexLock lock(&worker_mu_);
  return address_;
}

void UcxContext::ReceiveAmData(void* data_desc, void* buffer, size_t length,
                               absl::AnyInvocable<void(absl::Status)> done) {
  auto* r = new AmReceive{this, std::move(done)};
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  param.cb.recv_am = OnAmReceived;
  param.user_data = r;
  param.datatype = ucp_dt_make_contig(1);
  // Called from a handler, on the progress thread: the current worker delivered it.
  ucs_status_ptr_t request = ucp_am_recv_data_nbx(worker(), data_desc, buffer, length, &param);
  if (request != nullptr && !UCS_PTR_IS_ERR(request)) {
    BeginOperation();  // ended in OnAmReceived
    return;
  }
  std::move(r->done)(request == nullptr
                         ? absl::OkStatus()
                         : UcxError(UCS_PTR_STATUS(request), "ucp_am_recv_data_nbx"));
  delete r;
}

void UcxContext::RunOnProgressThread(std::function<void()> fn) {
  {
    absl::MutexLock lock(&tasks_mu_);
    tasks_.push_back(std::move(fn));
    has_tasks_.store(true, std::memory_order_release);
  }
  Wake();
}

void UcxContext::Wake() {
  if (ucp_worker_h worker = this->worker(); worker != nullptr) ucp_worker_signal(worker);
}

UcxContext::~UcxContext() {
  if (progress_thread_.joinable()) {
    stop_.store(true, std::memory_order_release);
    Wake();
    progress_thread_.join();
  }
  if (probe_worker_ != nullptr) ucp_worker_destroy(probe_worker_);
  if (ucp_worker_h worker = this->worker(); worker != nullptr) ucp_worker_destroy(worker);
  {
    absl::MutexLock lock(&worker_mu_);
    for (ucp_worker_h retired : retired_) ucp_worker_destroy(retired);
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

}  // namespace dsv3::transport
