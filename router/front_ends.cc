#include "router/front_ends.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "common/status_macros.h"
#include "router/grpc_inference_service.h"

ABSL_FLAG(int, http_threads, 64,
          "HTTP worker threads of the OpenAI API: the most HTTP requests (streams included) "
          "served at once.");
ABSL_FLAG(int64_t, max_request_body_bytes, int64_t{8} << 20,
          "Larger HTTP request bodies are refused with 413.");
ABSL_FLAG(int, max_streams_per_connection, 1024,
          "gRPC: the most calls one client connection may have open at once (HTTP/2 "
          "MAX_CONCURRENT_STREAMS); a client's further calls wait for one to end.");
ABSL_FLAG(std::string, api_keys, "",
          "File of API keys, one 'NAME KEY' or 'NAME sha256:HEX' a line, optionally followed "
          "by limits rps=N tpm=N streams=N (router/api_keys.h); re-read when it changes. Set: "
          "the gRPC and OpenAI APIs need 'Authorization: Bearer KEY'. Empty: open.");
ABSL_FLAG(double, api_key_rps, 0,
          "Requests per second a key may start when its line sets no rps= (0: no limit).");
ABSL_FLAG(double, api_key_tpm, 0,
          "Tokens (prompt + completion) per minute a key may use when its line sets no tpm= "
          "(0: no limit).");
ABSL_FLAG(int, api_key_max_streams, 0,
          "Requests a key may have in flight when its line sets no streams= (0: no limit).");

namespace dsv3::router {

OpenAiHttpOptions OpenAiHttpOptionsFromFlags() {
  OpenAiHttpOptions options;
  options.threads = std::max(1, absl::GetFlag(FLAGS_http_threads));
  options.max_body_bytes =
      static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_request_body_bytes)));
  return options;
}

absl::StatusOr<std::shared_ptr<ApiKeys>> ApiKeysFromFlags() {
  if (absl::GetFlag(FLAGS_api_keys).empty()) return std::shared_ptr<ApiKeys>();
  ApiKeyOptions options;
  options.defaults.requests_per_second = absl::GetFlag(FLAGS_api_key_rps);
  options.defaults.tokens_per_minute = absl::GetFlag(FLAGS_api_key_tpm);
  options.defaults.max_streams = absl::GetFlag(FLAGS_api_key_max_streams);
  if (!(options.defaults.requests_per_second >= 0) || !(options.defaults.tokens_per_minute >= 0) ||
      options.defaults.max_streams < 0) {
    return absl::InvalidArgumentError("--api_key_rps, --api_key_tpm, --api_key_max_streams: >= 0");
  }
  return ApiKeys::Load(absl::GetFlag(FLAGS_api_keys), std::move(options));
}

absl::Status AddFrontEnds(InferenceBackend& backend, ServerParts& parts) {
  DSV3_ASSIGN_OR_RETURN(std::shared_ptr<ApiKeys> keys, ApiKeysFromFlags());
  parts.services.push_back(std::make_unique<GrpcInferenceService>(backend, keys));
  const int max_streams = absl::GetFlag(FLAGS_max_streams_per_connection);
  if (max_streams < 1) return absl::InvalidArgumentError("--max_streams_per_connection: >= 1");
  std::function<void(grpc::ServerBuilder&)> configure = std::move(parts.configure_grpc);
  parts.configure_grpc = [configure = std::move(configure),
                          max_streams](grpc::ServerBuilder& builder) {
    if (configure) configure(builder);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, max_streams);
  };
  std::function<void(httplib::Server&)> earlier = std::move(parts.add_http_routes);
  OpenAiHttpOptions options = OpenAiHttpOptionsFromFlags();
  options.api_keys = keys;
  parts.add_http_routes = [earlier = std::move(earlier), &backend,
                           options](httplib::Server& server) {
    if (earlier) earlier(server);
    AddOpenAiRoutes(server, backend, options);
  };
  return absl::OkStatus();
}

}  // namespace dsv3::router
