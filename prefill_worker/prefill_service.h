#ifndef DSV3_PREFILL_WORKER_PREFILL_SERVICE_H_
#define DSV3_PREFILL_WORKER_PREFILL_SERVICE_H_

// dsv3.v1.PrefillWorker as the prefill worker serves it: Prefill (queue the prompt; answer
// with the first token once its KV is in the decode worker), UpdatePrefill; and its
// WorkerStatus (NewStatusService: its identity and load).

#include <atomic>
#include <memory>
#include <string>

#include "dsv3/v1/worker.grpc.pb.h"
#include "engine/model.h"
#include "prefill_worker/decode_pools.h"
#include "prefill_worker/prefill_scheduler.h"
#include "structured_output/grammar_constraint.h"
#include "transport/kv_transfer/kv_writer.h"
#include "transport/ucx/ucx_context.h"
#include "worker_common/load_watchers.h"
#include "worker_common/worker_status_service.h"

namespace dsv3::prefill {

struct PrefillServiceOptions {
  std::string model_name;
  PrefillSchedulerOptions scheduler;
  // Null: the model has no tokenizer, and requests with a grammar fail.
  std::shared_ptr<structured_output::StructuredOutputs> structured_outputs;
};

class PrefillService final : public v1::PrefillWorker::CallbackService {
 public:
  // `layout`: the local KV pool; decode workers must use the same layout (but pool size).
  static absl::StatusOr<std::unique_ptr<PrefillService>> Create(const engine::Model& model,
                                                                const engine::KvCacheLayout& layout,
                                                                transport::UcxContext& ucx,
                                                                PrefillServiceOptions options);
  ~PrefillService() override;

  grpc::ServerUnaryReactor* Prefill(grpc::CallbackServerContext* context,
                                    const v1::PrefillRequest* request,
                                    v1::PrefillResponse* response) override;
  grpc::ServerUnaryReactor* UpdatePrefill(grpc::CallbackServerContext* context,
                                          const v1::UpdatePrefillRequest* request,
                                          v1::UpdatePrefillResponse* response) override;
  // WorkerStatus for this worker: its identity, built now, and its load. Serve it beside this
  // service (it reads this service's load watchers).
  std::unique_ptr<worker::WorkerStatusService> NewStatusService() const;
  void Drain() {
    draining_->store(true);
    watchers_->Shutdown();
  }

 private:
  PrefillService(const engine::Model& model, PrefillServiceOptions options)
      : model_(model), options_(std::move(options)) {}
  // Checks a destination against this worker's model and layout.
  absl::StatusOr<PrefillUpdate> ToUpdate(const v1::KvDestination& destination) const;

  const engine::Model& model_;
  PrefillServiceOptions options_;
  std::string config_hash_;
  engine::KvCacheLayout layout_;
  // Checks destinations against their decode workers (ToUpdate is const; the cache is not).
  std::unique_ptr<DecodePools> decode_pools_ = std::make_unique<DecodePools>();
  std::unique_ptr<transport::KvWriter> writer_;
  std::unique_ptr<PrefillScheduler> scheduler_;
  std::unique_ptr<worker::LoadWatchers> watchers_;
  std::shared_ptr<std::atomic<bool>> draining_;  // set by Drain
};

}  // namespace dsv3::prefill

#endif  // DSV3_PREFILL_WORKER_PREFILL_SERVICE_H_
