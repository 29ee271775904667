#include "worker_common/worker_status_service.h"

namespace dsv3::worker {

grpc::ServerUnaryReactor* WorkerStatusService::GetInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetInfoRequest*,
                                                       v1::WorkerInfo* response) {
  *response = info_;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace dsv3::worker
