#ifndef DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_
#define DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_

// One UCX context and worker per process role, with its own progress thread. Puts over tcp
// and cma complete only while the target keeps progressing its worker, so both sides run
// this thread; it sleeps on the worker's event fd when there is nothing to do.

#include <ucp/api/ucp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace dsv3::transport {

struct UcxOptions {
  // UCX_TLS for this context ("" = UCX's default or the environment's): e.g. "tcp",
  // "shm,self", "posix,cma,self", "rc,ud" on RDMA nodes.
  std::string transports;
  // UCX_NET_DEVICES ("" = all); "lo" for tcp on loopback.
  std::string net_devices;
  // Endpoints in UCP_ERR_HANDLING_MODE_PEER learn that a peer died (its operations fail
  // instead of hanging). UCX 1.13's shared-memory transports (posix, sysv, cma) cannot
  // report peer failure, so in that mode it moves RMA onto tcp; turn this off to get true
  // shared-memory puts, relying on transfer deadlines (and gRPC health) to notice a death.
  bool peer_error_handling = true;
};

class UcxContext {
 public:
  static absl::StatusOr<std::unique_ptr<UcxContext>> Create(const UcxOptions& options);
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }
  // This worker's address (ucp_worker_get_address), for peers to connect to.
  const std::string& worker_address() const { return address_; }
  const UcxOptions& options() const { return options_; }
  // Wakes the progress thread (after posting work from another thread).
  void Wake();

 private:
  explicit UcxContext(UcxOptions options) : options_(std::move(options)) {}
  void ProgressLoop();

  const UcxOptions options_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;
  std::string address_;
  std::atomic<bool> stop_{false};  // release/acquire with the progress thread
  std::thread progress_thread_;
};

// "UCX error: <ucs_status_string>" as an absl::Status with a fitting code.
absl::Status UcxError(ucs_status_t status, const std::string& what);

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_
