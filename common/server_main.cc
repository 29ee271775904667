#include "common/server_main.h"

#include "common/build_info.h"
#include "common/cli.h"
#include "common/gpu_probe.h"
#include "common/logging.h"
#include "common/mutex_mode.h"

namespace dsv3 {

int RunServerMain(int argc, char** argv, const std::string& role, const std::string& usage,
                  const std::function<absl::StatusOr<ServerParts>()>& make_parts) {
  DisableMutexDeadlockDetection();  // before any Mutex is used
  // Before any thread exists, so every thread inherits the mask.
  BlockTerminationSignals();
  ParseCommandLineOrExit(argc, argv, usage);
  ServiceHostOptions options = ServiceHostOptionsFromFlags(role);
  // Before loading a model: a wrong certificate path fails in a second, not minutes.
  if (absl::Status tls = CheckTlsConfig(options.tls); !tls.ok()) {
    DSV3_LOG(ERROR) << "start-up failed: " << tls;
    return 1;
  }
  const BuildInfo& build = GetBuildInfo();
  DSV3_LOG(INFO) << "dsv3-" << role << " " << build.version << " (" << build.git_revision << ")";
  LogComputePlacement();

  absl::StatusOr<ServerParts> parts = make_parts();
  if (!parts.ok()) {
    DSV3_LOG(ERROR) << "start-up failed: " << parts.status();
    return 1;
  }
  options.add_http_routes = parts->add_http_routes;
  options.ready = parts->ready;
  options.configure_grpc = parts->configure_grpc;
  std::vector<grpc::Service*> services;
  for (auto& s : parts->services) services.push_back(s.get());
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(std::move(options), services);
  if (!host.ok()) {
    DSV3_LOG(ERROR) << "start-up failed: " << host.status();
    return 1;
  }
  if (parts->on_started) {
    absl::Status started = parts->on_started(**host);
    if (!started.ok()) {
      DSV3_LOG(ERROR) << "start-up failed: " << started;
      (*host)->Shutdown();
      return 1;
    }
  }
  (*host)->WaitForTerminationSignal();
  (*host)->BeginDrain();
  if (parts->on_draining) parts->on_draining();
  (*host)->Shutdown();
  if (parts->on_stopped) parts->on_stopped();
  host->reset();
  parts->services.clear();
  for (auto& resource : parts->keep_alive) resource.reset();  // in order
  return 0;
}

}  // namespace dsv3
