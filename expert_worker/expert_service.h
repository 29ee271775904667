#ifndef DSV3_EXPERT_WORKER_EXPERT_SERVICE_H_
#define DSV3_EXPERT_WORKER_EXPERT_SERVICE_H_

// dsv3.v1.Expert on an expert worker: Join (an attention worker's UCX address in, this
// worker's address, its member index and the placement out), GetPlacement, ApplyPlacement
// (from the EPLB rebalancer), WatchExpertLoad (tokens per expert, queue and compute time
// since the previous report of that stream).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>

#include "dsv3/v1/expert.grpc.pb.h"
#include "expert_worker/expert_compute_loop.h"
#include "expert_worker/expert_shard.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_expert_server.h"

namespace dsv3::expert {

class ExpertService final : public v1::Expert::Service {
 public:
  ExpertService(ExpertShard& shard, transport::UcxContext& ucx, transport::UcxExpertServer& server,
                ExpertComputeLoop& loop);

  grpc::Status Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override;
  grpc::Status GetPlacement(grpc::ServerContext* context, const v1::GetPlacementRequest* request,
                            v1::ExpertPlacement* response) override;
  grpc::Status ApplyPlacement(grpc::ServerContext* context, const v1::ExpertPlacement* request,
                              v1::ApplyPlacementResponse* response) override;
  grpc::Status WatchExpertLoad(grpc::ServerContext* context,
                               const v1::WatchExpertLoadRequest* request,
                               grpc::ServerWriter<v1::ExpertLoadReport>* writer) override;
  // Ends the load streams (before the gRPC drain).
  void Drain() { draining_.store(true); }

 private:
  ExpertShard& shard_;
  transport::UcxContext& ucx_;
  transport::UcxExpertServer& server_;
  ExpertComputeLoop& loop_;
  const std::string config_hash_;
  std::atomic<bool> draining_{false};
};

}  // namespace dsv3::expert

#endif  // DSV3_EXPERT_WORKER_EXPERT_SERVICE_H_
