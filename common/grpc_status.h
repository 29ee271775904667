#ifndef DSV3_COMMON_GRPC_STATUS_H_
#define DSV3_COMMON_GRPC_STATUS_H_

// absl::Status <-> grpc::Status, converted once at each gRPC boundary. The codes are the
// same numbers in both (both follow google.rpc.Code).

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace dsv3 {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace dsv3

#endif  // DSV3_COMMON_GRPC_STATUS_H_
