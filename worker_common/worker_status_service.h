#ifndef DSV3_WORKER_COMMON_WORKER_STATUS_SERVICE_H_
#define DSV3_WORKER_COMMON_WORKER_STATUS_SERVICE_H_

// dsv3.v1.WorkerStatus as every prefill and decode worker serves it: GetInfo answers the
// identity the worker built once when it started (its model, KV layout and, for a decode
// worker, its UCX pool), with the fields that can change brought up to date (a decode
// worker's UCX address, after a shared-memory worker replacement), and WatchLoad streams the
// worker's load reports (LoadWatchers). The role's own calls are on its own service
// (PrefillService, DecodeService).

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "dsv3/v1/worker.grpc.pb.h"
#include "engine/model_config.h"
#include "worker_common/load_watchers.h"

namespace dsv3::worker {

// What every worker's identity says, whatever its role: the role, the model (name, config
// hash, type, sizes) and this build. The role adds its KV layout and what it offers.
v1::WorkerInfo BaseWorkerInfo(v1::WorkerRole role, const std::string& model_name,
                              const std::string& config_hash, const engine::ModelConfig& config);

class WorkerStatusService final : public v1::WorkerStatus::CallbackService {
 public:
  // `watchers` must outlive the server this is registered with (the role's service owns
  // them; a ServiceHost stops serving before its services go).
  // `refresh`, if given, updates the fields that can change in each GetInfo answer.
  WorkerStatusService(v1::WorkerInfo info, LoadWatchers* watchers,
                      std::function<void(v1::WorkerInfo*)> refresh = nullptr)
      : info_(std::move(info)), watchers_(watchers), refresh_(std::move(refresh)) {}

  grpc::ServerWriteReactor<v1::LoadReport>* WatchLoad(
      grpc::CallbackServerContext* context, const v1::WatchLoadRequest* request) override {
    return watchers_->Watch(context, request);
  }
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* context,
                                    const v1::GetInfoRequest* request,
                                    v1::WorkerInfo* response) override;

  // As GetInfo answers it now.
  v1::WorkerInfo info() const;

 private:
  const v1::WorkerInfo info_;
  LoadWatchers* const watchers_;
  const std::function<void(v1::WorkerInfo*)> refresh_;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_WORKER_STATUS_SERVICE_H_
