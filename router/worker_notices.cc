#include "router/worker_notices.h"

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace dsv3::router {
namespace {

// Notices sent and not yet answered.
struct InFlight {
  absl::Mutex mu;
  int64_t calls ABSL_GUARDED_BY(mu) = 0;
};

InFlight& Notices() {
  static auto* in_flight = new InFlight;  // never destroyed: callbacks may run at exit
  return *in_flight;
}

void NoticeSent() {
  absl::MutexLock lock(&Notices().mu);
  ++Notices().calls;
}

void NoticeDone() {
  absl::MutexLock lock(&Notices().mu);
  --Notices().calls;
}

}  // namespace

void SendPrefillUpdate(v1::Worker::Stub& prefill, const std::string& address, uint64_t job_id,
                       const v1::KvDestination* destination, const std::string& cancel_reason,
                       absl::Time deadline, const std::string& request_id) {
  struct Call {
    grpc::ClientContext ctx;
    v1::UpdatePrefillRequest request;
    v1::UpdatePrefillResponse response;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(absl::ToChronoTime(deadline));
  call->request.set_job_id(job_id);
  if (destination != nullptr) {
    *call->request.mutable_destination() = *destination;
  } else {
    call->request.set_cancel_reason(cancel_reason);
  }
  NoticeSent();
  prefill.async()->UpdatePrefill(
      &call->ctx, &call->request, &call->response, [call, request_id, address](grpc::Status s) {
        if (!s.ok()) {
          DSV3_LOG(WARNING).With("request_id", request_id)
              << "UpdatePrefill on " << address << ": " << s.error_message();
        }
        NoticeDone();
      });
}

void SendLeaseRelease(v1::Worker::Stub& decode, uint64_t lease_id, uint64_t lease_secret,
                      const std::string& reason) {
  struct Call {
    grpc::ClientContext ctx;
    v1::ReleaseRequest request;
    v1::ReleaseResponse response;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  call->request.set_lease_id(lease_id);
  call->request.set_lease_secret(lease_secret);
  call->request.set_reason(reason);
  NoticeSent();
  decode.async()->Release(&call->ctx, &call->request, &call->response,
                          [call](grpc::Status) { NoticeDone(); });
}

bool WaitForWorkerNotices(absl::Duration timeout) {
  InFlight& n = Notices();
  absl::MutexLock lock(&n.mu);
  return n.mu.AwaitWithTimeout(absl::Condition(
                                   +[](int64_t* calls) { return *calls == 0; }, &n.calls),
                               timeout);
}

}  // namespace dsv3::router
