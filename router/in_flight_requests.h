#ifndef DSV3_ROUTER_IN_FLIGHT_REQUESTS_H_
#define DSV3_ROUTER_IN_FLIGHT_REQUESTS_H_

// The router's requests in flight, so that a router told to stop (SIGTERM, a rolling
// update) refuses new requests but lets the running ones finish up to the drain timeout,
// and ends those left with UNAVAILABLE (the client retries on another replica) rather than
// cutting them off.

#include <cstdint>
#include <map>
#include <memory>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/inference_backend.h"

namespace dsv3::router {

class InFlightRequests {
 public:
  // UNAVAILABLE once Drain has begun, else OK.
  absl::Status Admit() const;

  // A request about to start: returns the observer to give it, which forwards to `observer`
  // and forgets the request at OnDone. `*id` names it for Started.
  std::shared_ptr<GenerateObserver> Track(std::shared_ptr<GenerateObserver> observer, uint64_t* id);
  // The request started (its handle, to cancel it at the drain deadline) or did not
  // (`handle` null: it never gets OnDone).
  void Started(uint64_t id, const std::shared_ptr<GenerateHandle>& handle);

  // Refuses new requests, waits until every tracked one has ended or `deadline` has passed,
  // then cancels those left (their clients get UNAVAILABLE) and waits up to `cancel_grace`
  // for their OnDone. Returns how many were cancelled.
  int Drain(absl::Time deadline, absl::Duration cancel_grace = absl::Seconds(5));

  int size() const;

 private:
  class Observer;
  void Done(uint64_t id);

  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  struct Entry {
    std::weak_ptr<GenerateHandle> handle;
    std::shared_ptr<bool> drain_cancelled;  // read by the request's Observer
  };
  std::map<uint64_t, Entry> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_IN_FLIGHT_REQUESTS_H_
