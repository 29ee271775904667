#ifndef DSV3_ROUTER_FRONT_ENDS_H_
#define DSV3_ROUTER_FRONT_ENDS_H_

// Wires the router's two front ends over one InferenceBackend into a server binary: the
// gRPC dsv3.v1.Inference service and the OpenAI-compatible HTTP routes (beside /metrics).
//
//   dsv3::ServerParts parts;
//   dsv3::router::AddFrontEnds(*backend, parts);   // backend outlives the servers
//
// Flags: --http_threads, --max_request_body_bytes.

#include "common/server_main.h"
#include "router/inference_backend.h"
#include "router/openai_http.h"

namespace dsv3::router {

// The HTTP options from the flags.
OpenAiHttpOptions OpenAiHttpOptionsFromFlags();

// Adds the Inference service to parts.services and the OpenAI routes to
// parts.add_http_routes (after whatever routes it already adds). `parts` must not already
// hold another dsv3.v1.Inference service.
void AddFrontEnds(InferenceBackend& backend, ServerParts& parts);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_FRONT_ENDS_H_
