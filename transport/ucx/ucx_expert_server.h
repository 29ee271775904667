#ifndef DSV3_TRANSPORT_UCX_UCX_EXPERT_SERVER_H_
#define DSV3_TRANSPORT_UCX_UCX_EXPERT_SERVER_H_

// The expert worker's end of the UCX expert all-to-all. Attention workers become members
// through gRPC Join (AddMember opens an endpoint back to them); their dispatch messages are
// received on the UCX progress thread into a queue that the worker's compute loop drains
// with Take: everything that arrived meanwhile, from every member, so the loop can batch
// the tokens of the same layer into one computation per expert. Reply sends the outputs
// back to the member that asked.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "experts/dispatch_plan.h"
#include "transport/float_buffer_pool.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_peer.h"

namespace dsv3::transport {

// One dispatch received from a member. Its buffer goes back to the server's pool when it is
// destroyed.
struct ExpertDispatch {
  ExpertDispatch() = default;
  ExpertDispatch(const ExpertDispatch&) = delete;
  ExpertDispatch& operator=(const ExpertDispatch&) = delete;
  ~ExpertDispatch() {
    if (pool != nullptr) pool->Give(std::move(buffer));
  }

  uint32_t member = 0;
  uint64_t call_id = 0;
  int64_t layer = 0;
  int64_t placement_version = 0;
  int64_t rows = 0;
  int64_t pairs = 0;
  int64_t hidden = 0;
  experts::FloatBuffer buffer;  // the PackDispatch payload (f32-aligned storage)
  int64_t payload_bytes = 0;
  absl::Time arrived;
  std::shared_ptr<FloatBufferPool> pool;
  const uint8_t* payload() const { return reinterpret_cast<const uint8_t*>(buffer.data()); }
};

class UcxExpertServer {
 public:
  // Installs the dispatch handler on `context` (one server per context).
  static absl::StatusOr<std::unique_ptr<UcxExpertServer>> Create(UcxContext& context,
                                                                 int32_t worker_index);
  ~UcxExpertServer();

  // Opens (or reuses) an endpoint to a joining member; returns its member index.
  absl::StatusOr<uint32_t> AddMember(const std::string& ucx_address);
  // Waits up to `wait` for at least one dispatch, then returns all that are queued.
  std::vector<std::unique_ptr<ExpertDispatch>> Take(absl::Duration wait);
  // Answers a dispatch: outputs ([pairs, hidden] f32) when `status` is OK, else the error.
  // Sent without a copy: `keep_alive` (which owns `outputs`) is held until UCX is done with
  // them. Non-blocking; a member that left is skipped (its endpoint failed).
  void Reply(const ExpertDispatch& dispatch, const absl::Status& status,
             std::shared_ptr<const void> keep_alive, const float* outputs,
             int64_t placement_version);
  // Wakes Take callers and makes them return empty from now on.
  void Shutdown();
  int64_t members() const;

  // The queue, shared with rendezvous receives still in flight when the server goes away.
  struct Inbox;

 private:
  UcxExpertServer(UcxContext& context, int32_t worker_index)
      : context_(context), peers_(context), worker_index_(worker_index) {}
  static ucs_status_t OnDispatch(void* arg, const void* header, size_t header_length, void* data,
                                 size_t length, const ucp_am_recv_param_t* param);

  UcxContext& context_;
  UcxPeerCache peers_;
  const int32_t worker_index_;
  // Receive buffers, reused: fresh pages per dispatch cost more than receiving into them.
  std::shared_ptr<FloatBufferPool> pool_ = std::make_shared<FloatBufferPool>();
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<UcxPeer>> members_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> member_addresses_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Inbox> inbox_;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_EXPERT_SERVER_H_
