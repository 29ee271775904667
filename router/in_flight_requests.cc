#include "router/in_flight_requests.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace dsv3::router {
namespace {

template <typename Map>
bool NoneLeft(Map* requests) {
  return requests->empty();
}

}  // namespace

// Forwards to the request's own observer; at the end, forgets the request and turns the
// CANCELLED of a drain into UNAVAILABLE.
class InFlightRequests::Observer : public GenerateObserver {
 public:
  Observer(InFlightRequests* owner, uint64_t id, std::shared_ptr<GenerateObserver> inner,
           std::shared_ptr<bool> drain_cancelled)
      : owner_(owner),
        id_(id),
        inner_(std::move(inner)),
        drain_cancelled_(std::move(drain_cancelled)) {}

  void OnResponse(const v1::GenerateResponse& response) override { inner_->OnResponse(response); }

  void OnDone(const absl::Status& status) override {
    absl::Status end = status;
    {
      absl::MutexLock lock(&owner_->mu_);
      if (*drain_cancelled_ && status.code() == absl::StatusCode::kCancelled) {
        end = absl::UnavailableError(
            "the router shut down (drain timeout) before the request finished; retry it");
      }
    }
    inner_->OnDone(end);
    owner_->Done(id_);  // last: Drain waits for this
  }

 private:
  InFlightRequests* const owner_;
  const uint64_t id_;
  const std::shared_ptr<GenerateObserver> inner_;
  const std::shared_ptr<bool> drain_cancelled_;  // guarded by owner_->mu_
};

absl::Status InFlightRequests::Admit() const {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return absl::UnavailableError("the router is shutting down; retry on another replica");
  }
  return absl::OkStatus();
}

std::shared_ptr<GenerateObserver> InFlightRequests::Track(
    std::shared_ptr<GenerateObserver> observer, uint64_t* id) {
  absl::MutexLock lock(&mu_);
  *id = next_id_++;
  Entry& entry = requests_[*id];
  entry.drain_cancelled = std::make_shared<bool>(false);
  return std::make_shared<Observer>(this, *id, std::move(observer), entry.drain_cancelled);
}

void InFlightRequests::Started(uint64_t id, const std::shared_ptr<GenerateHandle>& handle) {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return;  // already done
  if (handle == nullptr) {
    requests_.erase(it);
  } else {
    it->second.handle = handle;
  }
}

void InFlightRequests::Done(uint64_t id) {
  absl::MutexLock lock(&mu_);
  requests_.erase(id);
}

int InFlightRequests::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(requests_.size());
}

int InFlightRequests::Drain(absl::Time deadline, absl::Duration cancel_grace) {
  std::vector<std::shared_ptr<GenerateHandle>> left;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    DSV3_LOG(INFO) << "draining: " << requests_.size() << " requests in flight";
    mu_.AwaitWithDeadline(absl::Condition(&NoneLeft<decltype(requests_)>, &requests_), deadline);
    for (auto& [id, entry] : requests_) {
      *entry.drain_cancelled = true;
      if (auto handle = entry.handle.lock()) left.push_back(std::move(handle));
    }
  }
  const int cancelled = static_cast<int>(left.size());
  if (cancelled == 0) return 0;
  DSV3_LOG(WARNING) << "drain timeout: cancelling " << cancelled << " requests in flight";
  for (auto& handle : left) handle->Cancel();
  left.clear();
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(&NoneLeft<decltype(requests_)>, &requests_),
                            cancel_grace)) {
    DSV3_LOG(WARNING) << requests_.size() << " cancelled requests did not end within "
                      << cancel_grace;
  }
  return cancelled;
}

}  // namespace dsv3::router
