#ifndef DSV3_DECODE_WORKER_DECODE_SERVICE_H_
#define DSV3_DECODE_WORKER_DECODE_SERVICE_H_

// dsv3.v1.DecodeWorker as the decode worker serves it: Reserve (blocks in the UCX-registered
// KV pool), Decode (join the running batch, stream tokens), Release; and its WorkerStatus
// (NewStatusService: its identity and load). Callback API: no handler blocks.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "decode_worker/decode_scheduler.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "engine/model.h"
#include "structured_output/grammar_constraint.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_memory_region.h"
#include "worker_common/load_watchers.h"
#include "worker_common/worker_status_service.h"

namespace dsv3::decode {

// Where the KV pool's memory comes from.
enum class KvPoolMemory {
  // Allocated by UCX (ucp_mem_map with UCP_MEM_MAP_ALLOCATE): over shared memory, prefill
  // workers' puts into it are truly one-sided (UCX 1.13 posix/sysv give remote keys only for
  // memory they allocated; see UcxMemoryRegion::Allocate).
  kUcx,
  // The engine's own mmap, registered with UCX (puts over shm are emulated).
  kEngine,
};
// "ucx" or "engine".
absl::StatusOr<KvPoolMemory> ParseKvPoolMemory(absl::string_view name);
absl::string_view KvPoolMemoryName(KvPoolMemory memory);

struct DecodeServiceOptions {
  std::string model_name;
  KvPoolMemory kv_pool_memory = KvPoolMemory::kEngine;
  std::string advertised_address;  // host:port peers use for this worker's gRPC
  DecodeSchedulerOptions scheduler;
  // Null: the model has no tokenizer, and requests with a grammar fail.
  std::shared_ptr<structured_output::StructuredOutputs> structured_outputs;
};

class DecodeService final : public v1::DecodeWorker::CallbackService {
 public:
  // Allocates the KV pool with `ucx`, or registers the scheduler's own pool with it
  // (options.kv_pool_memory), once, for the life of the service.
  static absl::StatusOr<std::unique_ptr<DecodeService>> Create(const engine::Model& model,
                                                               const engine::KvCacheLayout& layout,
                                                               transport::UcxContext& ucx,
                                                               DecodeServiceOptions options);
  ~DecodeService() override;

  grpc::ServerUnaryReactor* Reserve(grpc::CallbackServerContext* context,
                                    const v1::ReserveRequest* request,
                                    v1::ReserveResponse* response) override;
  grpc::ServerWriteReactor<v1::DecodeResponse>* Decode(grpc::CallbackServerContext* context,
                                                       const v1::DecodeRequest* request) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* context,
                                    const v1::ReleaseRequest* request,
                                    v1::ReleaseResponse* response) override;
  // WorkerStatus for this worker: its identity, built now, and its load. Serve it beside this
  // service (it reads this service's load watchers).
  std::unique_ptr<worker::WorkerStatusService> NewStatusService() const;

  void set_advertised_address(std::string address) { options_.advertised_address = address; }
  // Stop streaming load (drain) before the server shuts down.
  // SIGTERM: the load streams end (the router stops choosing this worker), requests in
  // flight run until `deadline`, the rest resume on other decode workers.
  void Drain(absl::Time deadline) {
    watchers_->Shutdown();
    scheduler_->Drain(deadline);
  }
  DecodeScheduler& scheduler() { return *scheduler_; }

 private:
  DecodeService(const engine::Model& model, transport::UcxContext& ucx,
                DecodeServiceOptions options)
      : model_(model), ucx_(ucx), options_(std::move(options)) {}
  v1::LoadReport LoadSnapshot() const;
  v1::KvLayout WireLayout() const;

  const engine::Model& model_;
  transport::UcxContext& ucx_;
  DecodeServiceOptions options_;
  std::string config_hash_;
  // kUcx: pool_region_ owns the pool's memory, so it must go after the scheduler; kEngine: the
  // scheduler's pool owns it, so the region (the registration) goes first (~DecodeService).
  std::unique_ptr<DecodeScheduler> scheduler_;
  std::unique_ptr<transport::UcxMemoryRegion> pool_region_;
  // The landing table (decode_worker/kv_landing_table.h) and its UCX memory; both outlive the
  // scheduler, which holds slots.
  std::unique_ptr<uint64_t[]> landing_memory_;  // kEngine: registered by landing_region_
  std::unique_ptr<transport::UcxMemoryRegion> landing_region_;
  std::unique_ptr<KvLandingTable> landing_;
  std::unique_ptr<worker::LoadWatchers> watchers_;
};

}  // namespace dsv3::decode

#endif  // DSV3_DECODE_WORKER_DECODE_SERVICE_H_
