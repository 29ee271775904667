#ifndef DSV3_ROUTER_GRPC_INFERENCE_SERVICE_H_
#define DSV3_ROUTER_GRPC_INFERENCE_SERVICE_H_

// dsv3.v1.Inference over gRPC's callback API: a thin translator onto InferenceBackend.
// Generate is a ServerWriteReactor that never blocks in a callback: the backend's observer
// queues responses, the reactor writes them one at a time (OnWriteDone starts the next),
// OnCancel cancels the backend request. That keeps thousands of streams open on a handful
// of threads.

#include <grpcpp/grpcpp.h>

#include "dsv3/v1/inference.grpc.pb.h"
#include "router/api_keys.h"
#include "router/inference_backend.h"

namespace dsv3::router {

class GrpcInferenceService final : public v1::Inference::CallbackService {
 public:
  // `backend` must outlive the service (and every call the service still runs). With
  // `api_keys`, every call needs `authorization: Bearer KEY` metadata (UNAUTHENTICATED
  // without) and Generate is held to the key's limits (RESOURCE_EXHAUSTED with a
  // retry-after-ms trailer over one).
  explicit GrpcInferenceService(InferenceBackend& backend,
                                std::shared_ptr<ApiKeys> api_keys = nullptr)
      : backend_(backend), api_keys_(std::move(api_keys)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  // The caller's key checks out (or no keys are configured); else the status to answer.
  absl::Status Authenticate(const grpc::CallbackServerContext& context);

  InferenceBackend& backend_;
  const std::shared_ptr<ApiKeys> api_keys_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_GRPC_INFERENCE_SERVICE_H_
