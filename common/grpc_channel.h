#ifndef DSV3_COMMON_GRPC_CHANNEL_H_
#define DSV3_COMMON_GRPC_CHANNEL_H_

// A gRPC channel between processes of the cluster (router -> workers, attention workers ->
// expert workers): insecure (pods talk inside the cluster network), and reconnecting within
// a second after the peer restarts instead of gRPC's default backoff of up to two minutes.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace dsv3 {

std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& address);

}  // namespace dsv3

#endif  // DSV3_COMMON_GRPC_CHANNEL_H_
