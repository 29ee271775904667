#ifndef DSV3_TRANSPORT_UCX_UCX_EXPERT_CLIENT_H_
#define DSV3_TRANSPORT_UCX_UCX_EXPERT_CLIENT_H_

// The attention worker's end of the UCX expert all-to-all: one endpoint per expert worker
// (peer error mode: a worker that dies fails its exchanges at once instead of at the
// deadline), dispatch sent as one active message per worker, combine answers received by a
// handler on the UCX progress thread (rendezvous straight into the call's output buffer).

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "transport/expert_all_to_all.h"
#include "transport/float_buffer_pool.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_peer.h"

namespace dsv3::transport {

class UcxExpertClient final : public ExpertAllToAll {
 public:
  // Installs the combine handler on `context` (one client per context).
  static absl::StatusOr<std::unique_ptr<UcxExpertClient>> Create(UcxContext& context);
  ~UcxExpertClient() override;

  // Expert worker `worker` is reachable at `ucx_address` and knows this client as `member`
  // (both from its Join answer). Replaces an earlier link to that worker.
  absl::Status Connect(int32_t worker, const std::string& ucx_address, uint32_t member);
  void Disconnect(int32_t worker);
  // Linked and its endpoint not failed.
  bool connected(int32_t worker) const;

  ExchangeResult Exchange(const ExchangeRequest& request,
                          absl::FunctionRef<void()> overlapped) override;
  // Where the exchange buffers come from: give ExchangeResult::outputs back here when done
  // with them (they are reused instead of faulting in fresh pages every layer).
  const std::shared_ptr<FloatBufferPool>& pool() const { return pool_; }

  struct Call;  // one exchange in flight (shared with the progress thread)

 private:
  explicit UcxExpertClient(UcxContext& context) : context_(context), peers_(context) {}
  static ucs_status_t OnCombine(void* arg, const void* header, size_t header_length, void* data,
                                size_t length, const ucp_am_recv_param_t* param);

  struct Link {
    std::shared_ptr<UcxPeer> peer;
    uint32_t member = 0;
  };

  UcxContext& context_;
  UcxPeerCache peers_;
  std::shared_ptr<FloatBufferPool> pool_ = std::make_shared<FloatBufferPool>();
  mutable absl::Mutex mu_;
  std::vector<Link> links_ ABSL_GUARDED_BY(mu_);  // by worker index
  absl::flat_hash_map<uint64_t, std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> next_call_{1};
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_EXPERT_CLIENT_H_
