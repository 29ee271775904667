#ifndef DSV3_ROUTER_WORKER_NOTICES_H_
#define DSV3_ROUTER_WORKER_NOTICES_H_

// The request path's one-way calls to workers: nothing waits for their answers (the Prefill
// call reports what became of a job; a lease not released expires on its own), so they own
// their call state and only log a failure.

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "dsv3/v1/worker.grpc.pb.h"

namespace dsv3::router {

// UpdatePrefill on a prefill worker's job: its KV destination (non-null), or the end of it
// with `cancel_reason`.
void SendPrefillUpdate(v1::PrefillWorker::Stub& prefill, const std::string& address,
                       uint64_t job_id, const v1::KvDestination* destination,
                       const std::string& cancel_reason, absl::Time deadline,
                       const std::string& request_id);

// Release of a decode worker's lease that no Decode will take.
void SendLeaseRelease(v1::DecodeWorker::Stub& decode, uint64_t lease_id, uint64_t lease_secret,
                      const std::string& reason);

// Waits, at most `timeout`, until every notice sent so far has been answered or has failed;
// false if some are still in flight. A router exiting at its drain timeout cancels the
// streams left, whose leases it then releases: without this wait those Releases die with the
// process and the decode worker holds their KV blocks until the leases expire.
bool WaitForWorkerNotices(absl::Duration timeout);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_WORKER_NOTICES_H_
