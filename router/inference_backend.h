#ifndef DSV3_ROUTER_INFERENCE_BACKEND_H_
#define DSV3_ROUTER_INFERENCE_BACKEND_H_

// The narrow surface the router's front ends (gRPC dsv3.v1.Inference, OpenAI-compatible
// HTTP) call. The implementation owns validation, tokenization and the chat template,
// worker choice, streaming detokenization, stop strings and cancellation; the front ends
// only translate their wire formats to and from the dsv3.v1 messages.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dsv3/v1/inference.pb.h"

namespace dsv3::router {

// Receives one request's responses in order. Called from backend threads; implementations
// must not block (queue the data and return).
class GenerateObserver {
 public:
  virtual ~GenerateObserver() = default;
  // New tokens/text of one completion (response.index); the last response of each index
  // has finish_reason and usage set.
  virtual void OnResponse(const v1::GenerateResponse& response) = 0;
  // Called exactly once, after the last OnResponse: OK when every completion finished,
  // otherwise the error that ended the request (its gRPC code maps to an HTTP status).
  virtual void OnDone(const absl::Status& status) = 0;
};

// A running request. Cancel() ends it (the client left): every worker holding it is told
// and what it held is freed; the observer then gets OnDone(CANCELLED). Idempotent.
class GenerateHandle {
 public:
  virtual ~GenerateHandle() = default;
  virtual void Cancel() = 0;
};

class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;

  // Validates and starts a request. Bad requests fail here, synchronously, with
  // INVALID_ARGUMENT (or NOT_FOUND for an unknown model); after a successful return the
  // observer gets the responses and exactly one OnDone.
  virtual absl::StatusOr<std::shared_ptr<GenerateHandle>> Generate(
      const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) = 0;

  virtual absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) = 0;
  virtual v1::ListModelsResponse ListModels() = 0;
  virtual absl::StatusOr<v1::ModelInfo> GetModelInfo(const std::string& model) = 0;
  // Detokenized text of one token id (for logprobs' alternatives); "" when the model has no
  // tokenizer or the id is out of range.
  virtual std::string TokenText(const std::string& model, int32_t token_id) = 0;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_INFERENCE_BACKEND_H_
