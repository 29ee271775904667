#include "router/front_ends.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "absl/flags/flag.h"
#include "router/grpc_inference_service.h"

ABSL_FLAG(int, http_threads, 64,
          "HTTP worker threads of the OpenAI API: the most HTTP requests (streams included) "
          "served at once.");
ABSL_FLAG(int64_t, max_request_body_bytes, int64_t{8} << 20,
          "Larger HTTP request bodies are refused with 413.");

namespace dsv3::router {

OpenAiHttpOptions OpenAiHttpOptionsFromFlags() {
  OpenAiHttpOptions options;
  options.threads = std::max(1, absl::GetFlag(FLAGS_http_threads));
  options.max_body_bytes =
      static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_request_body_bytes)));
  return options;
}

void AddFrontEnds(InferenceBackend& backend, ServerParts& parts) {
  parts.services.push_back(std::make_unique<GrpcInferenceService>(backend));
  std::function<void(httplib::Server&)> earlier = std::move(parts.add_http_routes);
  const OpenAiHttpOptions options = OpenAiHttpOptionsFromFlags();
  parts.add_http_routes = [earlier = std::move(earlier), &backend,
                           options](httplib::Server& server) {
    if (earlier) earlier(server);
    AddOpenAiRoutes(server, backend, options);
  };
}

}  // namespace dsv3::router
