#include "worker_common/worker_status_service.h"

#include "common/build_info.h"

namespace dsv3::worker {

v1::WorkerInfo BaseWorkerInfo(v1::WorkerRole role, const std::string& model_name,
                              const std::string& config_hash, const engine::ModelConfig& config) {
  v1::WorkerInfo info;
  info.set_role(role);
  info.set_model_name(model_name);
  info.set_config_hash(config_hash);
  info.set_model_type(config.model_type);
  info.set_vocab_size(static_cast<int32_t>(config.vocab_size));
  info.set_max_position_embeddings(static_cast<int32_t>(config.max_position_embeddings));
  info.set_version(GetBuildInfo().version);
  info.set_git_revision(GetBuildInfo().git_revision);
  return info;
}

grpc::ServerUnaryReactor* WorkerStatusService::GetInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetInfoRequest*,
                                                       v1::WorkerInfo* response) {
  *response = info();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

v1::WorkerInfo WorkerStatusService::info() const {
  v1::WorkerInfo info = info_;
  if (refresh_) refresh_(&info);
  return info;
}

}  // namespace dsv3::worker
