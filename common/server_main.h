#ifndef DSV3_COMMON_SERVER_MAIN_H_
#define DSV3_COMMON_SERVER_MAIN_H_

// The main() of every server binary: parse flags, configure logging, say where compute
// runs, start the ServiceHost with the binary's services, wait for SIGTERM/SIGINT, drain,
// exit 0.

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/service_host.h"

namespace dsv3 {

// What a binary contributes: its gRPC services (owned by the bundle) and HTTP routes.
struct ServerParts {
  // What the services use (a model, a UCX context); destroyed after the services, first
  // element first.
  std::vector<std::shared_ptr<void>> keep_alive;
  std::vector<std::unique_ptr<grpc::Service>> services;
  std::function<void(httplib::Server&)> add_http_routes;
  // Tunes the gRPC server before it starts (ServiceHostOptions::configure_grpc).
  std::function<void(grpc::ServerBuilder&)> configure_grpc;
  // Readiness beyond "listening and not draining" (ServiceHostOptions::ready).
  std::function<bool()> ready;
  // Runs after the servers listen and before waiting for a signal (e.g. start workers).
  std::function<absl::Status(ServiceHost&)> on_started;
  // Run on a termination signal, once the host reports not ready and refuses new HTTP
  // work: before the gRPC drain (refuse new work, let what runs finish), and after it
  // (stop background threads).
  std::function<void()> on_draining;
  std::function<void()> on_stopped;
};

// `make_parts` runs after flag parsing. Returns the process exit code.
int RunServerMain(int argc, char** argv, const std::string& role, const std::string& usage,
                  const std::function<absl::StatusOr<ServerParts>()>& make_parts);

}  // namespace dsv3

#endif  // DSV3_COMMON_SERVER_MAIN_H_
