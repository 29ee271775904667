#include "common/grpc_status.h"

#include <string>

#include "absl/strings/cord.h"

namespace dsv3 {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {
constexpr char kResumablePayload[] = "type.dsv3/resumable";
}  // namespace

absl::Status MarkResumable(absl::Status status) {
  if (!status.ok()) status.SetPayload(kResumablePayload, absl::Cord("1"));
  return status;
}

bool IsResumable(const absl::Status& status) {
  return status.GetPayload(kResumablePayload).has_value();
}

}  // namespace dsv3
