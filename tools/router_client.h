#ifndef DSV3_TOOLS_ROUTER_CLIENT_H_
#define DSV3_TOOLS_ROUTER_CLIENT_H_

// What the commands that call a router (complete, chat, bench) share: the API key they
// present when the router has --api_keys (--api_key, or $DSV3_API_KEY).

#include <grpcpp/grpcpp.h>

namespace dsv3::tools {

// Adds `authorization: Bearer KEY` to `ctx` when a key is given.
void AddApiKey(grpc::ClientContext& ctx);

}  // namespace dsv3::tools

#endif  // DSV3_TOOLS_ROUTER_CLIENT_H_
