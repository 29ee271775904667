#include "router/worker_notices.h"

#include <grpcpp/grpcpp.h>

#include <memory>

#include "common/logging.h"
#include "router/live_count.h"

namespace dsv3::router {
namespace {

// Notices sent and not yet answered; never destroyed: callbacks may run at exit.
LiveCount& Notices() {
  static auto* in_flight = new LiveCount;
  return *in_flight;
}

void NoticeSent() { Notices().Add(); }
void NoticeDone() { Notices().Remove(); }

}  // namespace

void SendPrefillUpdate(v1::PrefillWorker::Stub& prefill, const std::string& address,
                       uint64_t job_id, const v1::KvDestination* destination,
                       const std::string& cancel_reason, absl::Time deadline,
                       const std::string& request_id) {
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

void SendLeaseRelease(v1::DecodeWorker::Stub& decode, uint64_t lease_id, uint64_t lease_secret,
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

bool WaitForWorkerNotices(absl::Duration timeout) { return Notices().WaitForNone(timeout); }

}  // namespace dsv3::router
