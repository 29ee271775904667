#include "transport/ucx/ucx_context.h"

#include <poll.h>

#include "absl/strings/str_cat.h"

namespace dsv3::transport {

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

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  // Puts are posted from compute threads while the progress thread runs.
  worker_params.thread_mode = UCS_THREAD_MODE_MULTI;
  status = ucp_worker_create(ctx->context_, &worker_params, &ctx->worker_);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_create");

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  if (ucp_worker_query(ctx->worker_, &attr) == UCS_OK &&
      attr.thread_mode != UCS_THREAD_MODE_MULTI) {
    return absl::FailedPreconditionError("UCX worker does not support UCS_THREAD_MODE_MULTI");
  }

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  status = ucp_worker_get_address(ctx->worker_, &address, &address_length);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_get_address");
  ctx->address_.assign(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(ctx->worker_, address);

  status = ucp_worker_get_efd(ctx->worker_, &ctx->event_fd_);
  if (status != UCS_OK) return UcxError(status, "ucp_worker_get_efd");

  ctx->progress_thread_ = std::thread([raw = ctx.get()] { raw->ProgressLoop(); });
  return ctx;
}

void UcxContext::ProgressLoop() {
  while (!stop_.load(std::memory_order_acquire)) {
    while (ucp_worker_progress(worker_) != 0) {
    }
    ucs_status_t status = ucp_worker_arm(worker_);
    if (status == UCS_ERR_BUSY) continue;  // new events arrived meanwhile
    pollfd pfd{event_fd_, POLLIN, 0};
    // The timeout bounds how long a missed wake-up could delay progress.
    poll(&pfd, 1, 50);
  }
}

void UcxContext::Wake() {
  if (worker_ != nullptr) ucp_worker_signal(worker_);
}

UcxContext::~UcxContext() {
  if (progress_thread_.joinable()) {
    stop_.store(true, std::memory_order_release);
    Wake();
    progress_thread_.join();
  }
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
}

}  // namespace dsv3::transport
