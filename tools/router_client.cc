#include "tools/router_client.h"

#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, api_key, "",
          "API key to present to a router started with --api_keys (default: $DSV3_API_KEY).");

namespace dsv3::tools {

void AddApiKey(grpc::ClientContext& ctx) {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    const char* env = std::getenv("DSV3_API_KEY");
    if (env != nullptr) key = env;
  }
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
}

}  // namespace dsv3::tools
