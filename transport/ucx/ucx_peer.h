#ifndef DSV3_TRANSPORT_UCX_UCX_PEER_H_
#define DSV3_TRANSPORT_UCX_UCX_PEER_H_

// An endpoint to a remote UCX worker, opened once and reused, with error handling in PEER
// mode so a peer that dies fails its outstanding operations instead of hanging them; and
// PutBatch, the set of one-sided puts of one transfer that a caller flushes and waits for
// with a deadline.

#include <ucp/api/ucp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "transport/ucx/ucx_context.h"

namespace dsv3::transport {

class UcxPeer;

// Outstanding operations of one transfer. Completion callbacks run on the progress thread.
class PutBatch {
 public:
  explicit PutBatch(std::shared_ptr<UcxPeer> peer);
  ~PutBatch();
  PutBatch(const PutBatch&) = delete;
  PutBatch& operator=(const PutBatch&) = delete;

  // Posts a put of [local, local + length) to remote_address under `rkey`. `local` must
  // stay valid until Flush returns. Non-blocking.
  absl::Status Put(const void* local, size_t length, uint64_t remote_address, ucp_rkey_h rkey);
  // Flushes the endpoint and waits until every put is complete at the target. On deadline
  // or peer failure the peer is marked failed and its endpoint closed, which completes
  // whatever was outstanding. `still_there`, when given, is asked every `check_every` while
  // the wait lasts: transports without peer-failure detection (shared memory in UCX 1.13)
  // would otherwise wait for a dead peer until the deadline; an error from it fails the
  // flush the same way.
  absl::Status Flush(absl::Time deadline,
                     const std::function<absl::Status()>& still_there = nullptr,
                     absl::Duration check_every = absl::Milliseconds(100));
  int64_t bytes() const { return bytes_; }

  // Shared with in-flight requests, so a request completing after the waiter gave up
  // touches live memory.
  struct State {
    explicit State(UcxContext* c) : context(c) {}
    UcxContext* const context;  // its outstanding-operation count (see BeginOperation)
    absl::Mutex mu;
    int pending ABSL_GUARDED_BY(mu) = 0;
    absl::Status first_error ABSL_GUARDED_BY(mu);
  };

 private:
  absl::Status Post(ucs_status_ptr_t request_or_status, const std::shared_ptr<State>& holder,
                    std::shared_ptr<State>* callback_ref, const char* what);

  std::shared_ptr<UcxPeer> peer_;
  std::shared_ptr<State> state_;
  int64_t bytes_ = 0;
};

class UcxPeer : public std::enable_shared_from_this<UcxPeer> {
 public:
  ~UcxPeer();
  UcxPeer(const UcxPeer&) = delete;
  UcxPeer& operator=(const UcxPeer&) = delete;

  // Unpacks (once per distinct packed key) a remote key for this endpoint.
  absl::StatusOr<ucp_rkey_h> Rkey(const std::string& packed_rkey);
  // OK while the endpoint is usable; the error that broke it otherwise (or that the
  // context's worker was replaced since it was made).
  absl::Status health() const;
  // Lock-free check of the same (safe to call while holding other locks).
  bool failed() const { return failed_.load(std::memory_order_acquire) || stale(); }
  // Marks the peer failed and closes the endpoint (forced in peer error mode, which
  // completes every outstanding operation with an error). Never call it from a UCX
  // callback: UCX may run callbacks inside the calls that Post makes.
  void MarkFailed(absl::Status status);
  // Runs `post` with the endpoint, excluding a concurrent close, unless the peer failed
  // (then returns its error without calling `post`).
  absl::StatusOr<ucs_status_ptr_t> Post(absl::FunctionRef<ucs_status_ptr_t(ucp_ep_h)> post);
  UcxContext& context() const { return context_; }

 private:
  friend class UcxPeerCache;
  UcxPeer(UcxContext& context, std::string address, uint64_t generation)
      : context_(context), address_(std::move(address)), generation_(generation) {}
  // Made on a worker the context has since replaced: that worker is never progressed again,
  // so the endpoint is left to it (closing would wait for progress that never comes).
  bool stale() const { return context_.generation() != generation_; }
  // UCX's error callback: records the failure only (it may run inside a Post, or inside
  // the close itself); the endpoint is closed by MarkFailed or the destructor.
  static void OnError(void* arg, ucp_ep_h ep, ucs_status_t status);
  void RecordFailure(absl::Status status);

  UcxContext& context_;
  const std::string address_;
  const uint64_t generation_;  // the context's worker generation the endpoint was made on
  // Readers: operations on the endpoint; writer: its close. Lock order: mu_ before
  // failure_mu_ and before PutBatch::State::mu (a forced close runs completions).
  mutable absl::Mutex mu_;
  ucp_ep_h ep_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, ucp_rkey_h> rkeys_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex failure_mu_;
  absl::Status failure_ ABSL_GUARDED_BY(failure_mu_);
  std::atomic<bool> failed_{false};  // mirrors !failure_.ok(); release/acquire
};

// Endpoints by remote worker address: connect once, reuse for every transfer; a failed
// endpoint is replaced on the next Get.
class UcxPeerCache {
 public:
  explicit UcxPeerCache(UcxContext& context) : context_(context) {}
  ~UcxPeerCache();
  absl::StatusOr<std::shared_ptr<UcxPeer>> Get(const std::string& worker_address);
  // Endpoints currently open (for tests and metrics).
  size_t size() const;

 private:
  UcxContext& context_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<UcxPeer>> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_PEER_H_
