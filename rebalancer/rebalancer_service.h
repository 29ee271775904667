#ifndef DSV3_REBALANCER_REBALANCER_SERVICE_H_
#define DSV3_REBALANCER_REBALANCER_SERVICE_H_

// dsv3.v1.Rebalancer: what the rebalancer sees (leader or not, the placement in effect, each
// expert worker), for operators and tools.

#include <grpcpp/grpcpp.h>

#include "dsv3/v1/expert.grpc.pb.h"
#include "experts/expert_rebalancer.h"

namespace dsv3::rebalancer {

class RebalancerService final : public v1::Rebalancer::Service {
 public:
  explicit RebalancerService(const experts::ExpertRebalancer& rebalancer)
      : rebalancer_(rebalancer) {}

  grpc::Status GetRebalancerStatus(grpc::ServerContext*, const v1::GetRebalancerStatusRequest*,
                                   v1::RebalancerStatus* response) override {
    *response = rebalancer_.Status();
    return grpc::Status::OK;
  }

 private:
  const experts::ExpertRebalancer& rebalancer_;
};

}  // namespace dsv3::rebalancer

#endif  // DSV3_REBALANCER_REBALANCER_SERVICE_H_
