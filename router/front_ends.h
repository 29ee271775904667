#ifndef DSV3_ROUTER_FRONT_ENDS_H_
#define DSV3_ROUTER_FRONT_ENDS_H_

// Wires the router's two front ends over one InferenceBackend into a server binary: the
// gRPC dsv3.v1.Inference service and the OpenAI-compatible HTTP routes (beside /metrics).
//
//   dsv3::ServerParts parts;
//   RETURN_IF_ERROR(dsv3::router::AddFrontEnds(*backend, parts));  // backend outlives them
//
// Flags: --http_threads, --max_request_body_bytes, --api_keys and the keys' default limits.

#include <memory>

#include "absl/status/statusor.h"
#include "common/server_main.h"
#include "router/api_keys.h"
#include "router/inference_backend.h"
#include "router/openai_http.h"

namespace dsv3::router {

// The HTTP options from the flags (the API keys not included).
OpenAiHttpOptions OpenAiHttpOptionsFromFlags();

// The API keys from --api_keys (nullptr when none is given), with the default limits.
absl::StatusOr<std::shared_ptr<ApiKeys>> ApiKeysFromFlags();

// Adds the Inference service to parts.services and the OpenAI routes to
// parts.add_http_routes (after whatever routes it already adds). `parts` must not already
// hold another dsv3.v1.Inference service. Fails when --api_keys cannot be read.
absl::Status AddFrontEnds(InferenceBackend& backend, ServerParts& parts);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_FRONT_ENDS_H_
