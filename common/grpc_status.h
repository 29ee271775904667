#ifndef DSV3_COMMON_GRPC_STATUS_H_
#define DSV3_COMMON_GRPC_STATUS_H_

// absl::Status <-> grpc::Status, converted once at each gRPC boundary. The codes are the
// same numbers in both (both follow google.rpc.Code).

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace dsv3 {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// A worker's error that another worker can serve instead (it is shutting down): its caller
// may resume the request elsewhere (the router migrates it). Marked as a payload inside the
// process; on the wire as the trailer kResumableTrailer, "1" or "0", which a worker sets on
// every stream it ends with an error, so that a stream without it broke in transport (the
// worker died).
inline constexpr char kResumableTrailer[] = "dsv3-resumable";
absl::Status MarkResumable(absl::Status status);
bool IsResumable(const absl::Status& status);

}  // namespace dsv3

#endif  // DSV3_COMMON_GRPC_STATUS_H_
