#ifndef DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_
#define DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_

// One UCX context and worker per process role, with its own progress thread. Puts over tcp
// and cma complete only while the target keeps progressing its worker, so both sides run
// this thread; it sleeps on the worker's event fd when there is nothing to do.
//
// Over shared memory only (peer error handling off), the worker can be replaced. UCX's
// shared-memory receive queue is a ring that every sender writes into: a sender takes a
// slot, fills it, then marks it written, and the receiver reads the slots in order. A
// sender killed between taking a slot and marking it (a prefill or decode worker that
// crashed mid-message) stops the ring for good, and with it every message from every peer.
// So the progress thread probes its own worker from a second one every kProbeEvery; a probe
// still unread after kProbeTimeout of progress means the ring stopped, and the context moves
// to a fresh worker (new address, same registered memory). Endpoints of the old one fail;
// caches connect afresh (tests/transport/ucx_dead_sender_test.cc).

#include <ucp/api/ucp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

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
  // Called on the progress thread after the worker was replaced (shared memory only, see
  // above), with the new generation: for the process's metrics and log.
  std::function<void(uint64_t generation)> on_worker_replaced;
};

class UcxContext {
 public:
  static absl::StatusOr<std::unique_ptr<UcxContext>> Create(const UcxOptions& options);
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  ucp_context_h context() const { return context_; }
  // The current worker. After a replacement (above) the old one stays allocated, unprogressed,
  // until the context ends, so endpoints and requests on it stay valid memory.
  ucp_worker_h worker() const { return worker_.load(std::memory_order_acquire); }
  // Counts worker replacements: an endpoint made under another generation is dead.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // The current worker's address (ucp_worker_get_address), for peers to connect to.
  std::string worker_address() const;
  const UcxOptions& options() const { return options_; }
  // Wakes the progress thread (after posting work from another thread).
  void Wake();
  // Brackets an operation posted from another thread that has not completed yet (a put or
  // flush that returned a request). While any is outstanding the progress thread polls the
  // worker instead of sleeping on its event fd: requests waiting in UCX's pending queues (a
  // full shared-memory FIFO, a tcp socket that was full) make progress only when polled,
  // and no event announces room for them. The first one wakes the thread.
  void BeginOperation();
  void EndOperation();
  // Runs `fn` on the progress thread (soon; in posting order). Large active-message sends
  // posted there pipeline with the peer's receive, as replies from inside a handler do;
  // posted from another thread, UCX 1.13 pushes a multi-megabyte shared-memory send
  // before the call returns.
  void RunOnProgressThread(std::function<void()> fn);
  // From inside an active-message handler: receives the message's rendezvous data
  // (`data_desc`, `length` as the handler got them) into `buffer`. `done` runs exactly once:
  // now when the receive completes in place or cannot start, else on the progress thread
  // when the data is in; meanwhile the progress thread polls (no event announces the rest of
  // a rendezvous over tcp).
  void ReceiveAmData(void* data_desc, void* buffer, size_t length,
                     absl::AnyInvocable<void(absl::Status)> done);
  // Installs the handler of active-message id `id` (ids below 8 are the context's own) on
  // the worker and on any that replaces it; a null callback removes it. Handlers run on the
  // progress thread.
  absl::Status SetAmHandler(unsigned id, ucp_am_recv_callback_t callback, void* arg);
  // Round trip on a new endpoint: an active message to the peer, whose worker answers on
  // its endpoint back to us. When the answer arrives, wire-up is complete on both sides
  // (UCX 1.13 aborts in a peer that fails while its wire-up reply is still queued).
  // `worker` is the one `ep` was made on. Ends early (UNAVAILABLE) if the worker is replaced.
  absl::Status Ping(ucp_worker_h worker, ucp_ep_h ep, absl::Time deadline);

 private:
  explicit UcxContext(UcxOptions options) : options_(std::move(options)) {}
  void ProgressLoop();
  // A worker with this context's handlers installed, and its address.
  absl::Status NewWorker(ucp_worker_h* worker, std::string* address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker_mu_);
  // The probe (shared memory only): a second worker with an endpoint to `address`.
  absl::Status NewProbe(const std::string& address);
  // On the progress thread: sends the next probe or judges the outstanding one.
  void ProbeStep();
  void ReplaceWorker();
  static ucs_status_t OnProbe(void* arg, const void* header, size_t header_length, void* data,
                              size_t length, const ucp_am_recv_param_t* param);
  static ucs_status_t OnPing(void* arg, const void* header, size_t header_length, void* data,
                             size_t length, const ucp_am_recv_param_t* param);
  static ucs_status_t OnPong(void* arg, const void* header, size_t header_length, void* data,
                             size_t length, const ucp_am_recv_param_t* param);

  const UcxOptions options_;
  ucp_context_h context_ = nullptr;
  std::atomic<ucp_worker_h> worker_{nullptr};
  std::atomic<uint64_t> generation_{0};
  int event_fd_ = -1;
  mutable absl::Mutex worker_mu_;  // serializes replacement against readers of these
  std::string address_ ABSL_GUARDED_BY(worker_mu_);
  struct Handler {
    ucp_am_recv_callback_t callback;
    void* arg;
  };
  absl::flat_hash_map<unsigned, Handler> handlers_ ABSL_GUARDED_BY(worker_mu_);
  std::vector<ucp_worker_h> retired_ ABSL_GUARDED_BY(worker_mu_);
  // The probe; touched only by the progress thread once it runs.
  ucp_worker_h probe_worker_ = nullptr;
  ucp_ep_h probe_ep_ = nullptr;
  uint64_t probe_header_ = 0;  // the outstanding probe's number (UCX may read it until sent)
  absl::Time probe_sent_at_ = absl::InfinitePast();
  int64_t probe_rounds_ = 0;  // progress rounds since it was sent
  std::atomic<uint64_t> probe_seen_{0};
  std::atomic<bool> stop_{false};  // release/acquire with the progress thread
  std::atomic<int64_t> outstanding_{0};

  absl::Mutex tasks_mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(tasks_mu_);
  std::atomic<bool> has_tasks_{false};
  absl::Mutex ping_mu_;
  uint64_t next_ping_ ABSL_GUARDED_BY(ping_mu_) = 1;
  absl::flat_hash_set<uint64_t> pongs_ ABSL_GUARDED_BY(ping_mu_);
  std::thread progress_thread_;
};

// "UCX error: <ucs_status_string>" as an absl::Status with a fitting code.
absl::Status UcxError(ucs_status_t status, const std::string& what);

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_CONTEXT_H_
