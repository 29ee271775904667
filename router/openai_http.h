#ifndef DSV3_ROUTER_OPENAI_HTTP_H_
#define DSV3_ROUTER_OPENAI_HTTP_H_

// The OpenAI-compatible HTTP API on cpp-httplib, a thin translator onto InferenceBackend:
//   POST /v1/chat/completions, POST /v1/completions (JSON, or SSE with "stream": true),
//   GET /v1/models, GET /v1/models/{id}, GET /health; with API keys (api_keys.h) every /v1/
//   route asks for one.
// Errors are OpenAI's error JSON (openai_error.h); an unknown route is a 404 in that form.
//
// Every request holds one httplib pool thread for its whole life (a stream included), so
// the pool is sized by `threads`. A streaming response waits for queued chunks at most
// `poll_interval` at a time and checks between waits that the client is still there; when
// it left, the backend request is cancelled and the thread is released. A non-streaming
// request checks the same through the kernel's view of its connection (tcp_peer_state.h).

#include <cstddef>
#include <memory>

#include "absl/time/time.h"
#include "router/api_keys.h"
#include "router/inference_backend.h"

namespace httplib {
class Server;
}

namespace dsv3::router {

struct OpenAiHttpOptions {
  // Larger request bodies get 413.
  size_t max_body_bytes = size_t{8} << 20;
  // httplib worker threads: the most requests (streams included) served at once.
  int threads = 64;
  // How long a stream waits for the backend before checking that its client is still there.
  absl::Duration poll_interval = absl::Milliseconds(50);
  // How often a non-streaming request asks the kernel whether its client closed the
  // connection (tcp_peer_state.h); if so the request is cancelled.
  absl::Duration disconnect_check_interval = absl::Milliseconds(200);
  // When set, /v1/* needs `Authorization: Bearer KEY` (401 without) and generations are
  // held to the key's limits (429 with Retry-After over one); /health stays open.
  std::shared_ptr<ApiKeys> api_keys;
};

// Adds the routes, the error handler, the body limit and the thread pool to `server`
// (before it listens). `backend` must outlive the server.
void AddOpenAiRoutes(httplib::Server& server, InferenceBackend& backend,
                     const OpenAiHttpOptions& options);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OPENAI_HTTP_H_
