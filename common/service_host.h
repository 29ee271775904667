#ifndef DSV3_COMMON_SERVICE_HOST_H_
#define DSV3_COMMON_SERVICE_HOST_H_

// What every dsv3 server process shares: a gRPC server with grpc.health.v1, an HTTP server
// with /metrics (plus whatever routes the binary adds), a ready file for launchers and
// tests, and a clean shutdown on SIGTERM/SIGINT (stop taking work, drain, exit 0).
//
// Liveness and readiness are apart, as Kubernetes probes them: grpc.health.v1 service
// "liveness" (HTTP GET /health/live) is SERVING while the process serves at all;
// "readiness" (GET /health/ready) and "" only while it can take new work: the binary's
// `ready` check holds (the router: it sees workers for a model) and it is not draining.
//
//   dsv3::BlockTerminationSignals();            // first thing in main, before any thread
//   ... parse flags ...
//   auto host = dsv3::ServiceHost::Start(options, {&my_service});
//   host->WaitForTerminationSignal();
//   host->Shutdown();

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_channel.h"
#include "common/tls_config.h"

namespace httplib {
class Server;
}

namespace dsv3 {

struct ServiceHostOptions {
  // Process role for logs, metrics and the ready file ("router", "prefill", ...).
  std::string role;
  std::string host = "127.0.0.1";
  // 0 picks a free port; the bound ports are reported by grpc_port()/http_port().
  int grpc_port = 0;
  int http_port = 0;
  // -1: /metrics on the HTTP port; else a listener of its own (0 picks a port) serving
  // /metrics and the probes, and the HTTP port serves no /metrics.
  int metrics_port = -1;
  // When set, written once the servers listen: {"role","pid","grpc","http","metrics"}.
  std::string ready_file;
  // How long in-flight calls may run on after a termination signal.
  absl::Duration drain_timeout = absl::Seconds(10);
  // HTTP/2 keepalive of the gRPC server (grpc_channel.h); zero time: gRPC's defaults.
  KeepaliveOptions keepalive{absl::ZeroDuration(), absl::ZeroDuration()};
  // TLS on both ports when tls.cert is set (tls_config.h); client certificates on gRPC when
  // tls.require_client_cert.
  TlsConfig tls;
  // Extra HTTP routes (the router's OpenAI API); /metrics is always there.
  std::function<void(httplib::Server&)> add_http_routes;
  // Lets a binary tune the gRPC server (message sizes, thread pools) before it starts.
  std::function<void(grpc::ServerBuilder&)> configure_grpc;
  // Whether the process can take new work, asked every `ready_interval`; empty: always,
  // once listening.
  std::function<bool()> ready;
  absl::Duration ready_interval = absl::Milliseconds(250);
};

// grpc.health.v1 service names the probes ask for.
inline constexpr char kLivenessService[] = "liveness";
inline constexpr char kReadinessService[] = "readiness";

// Reads the flags every server binary has (--host, --grpc_port, --http_port, --metrics_port,
// --ready_file, --drain_timeout, --log_level, --log_json, --tls_*) into options and
// configures logging.
ServiceHostOptions ServiceHostOptionsFromFlags(const std::string& role);

class ServiceHost {
 public:
  // Starts both servers and reports live (and ready, as `ready` says). `services` must
  // outlive the host.
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Start(
      ServiceHostOptions options, const std::vector<grpc::Service*>& services);
  ~ServiceHost();
  ServiceHost(const ServiceHost&) = delete;
  ServiceHost& operator=(const ServiceHost&) = delete;

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  // Where /metrics is served: its own port, or the HTTP port.
  int metrics_port() const { return metrics_port_ > 0 ? metrics_port_ : http_port_; }
  std::string grpc_address() const;

  // Stops taking new work while the calls in flight go on: readiness turns NOT_SERVING and
  // new HTTP requests (but /metrics and /health/live) get 503 with Connection: close.
  // Liveness stays SERVING. Idempotent.
  void BeginDrain();
  bool draining() const { return draining_.load(); }

  // Blocks until SIGTERM or SIGINT arrives (BlockTerminationSignals must have run first).
  // Returns the signal number.
  int WaitForTerminationSignal();

  // BeginDrain, then lets in-flight gRPC calls finish up to the drain timeout (then cancels
  // them), stops HTTP and reports NOT_SERVING everywhere. Idempotent.
  void Shutdown();

 private:
  explicit ServiceHost(ServiceHostOptions options);
  bool Ready() const;
  void SetHealth(const char* service, bool serving);
  // Reports readiness when it changed (or `first`). mu_ held.
  void UpdateReadiness(bool first);
  void WatchReadiness();  // the readiness thread
  // An HTTP server, HTTPS with TLS on; null (and `status`) when TLS cannot be set up.
  std::unique_ptr<httplib::Server> NewHttpServer(absl::Status* status) const;
  // /health/live, /health/ready and, when `metrics`, /metrics.
  void AddHealthRoutes(httplib::Server& server, bool metrics);
  absl::Status StartMetricsServer();

  ServiceHostOptions options_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<httplib::Server> http_server_;
  std::thread http_thread_;
  std::unique_ptr<httplib::Server> metrics_server_;
  std::thread metrics_thread_;
  int metrics_port_ = 0;
  int grpc_port_ = 0;
  int http_port_ = 0;
  bool shut_down_ = false;
  std::atomic<bool> draining_{false};
  std::atomic<bool> ready_reported_{false};
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread readiness_thread_;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards,
// so that WaitForTerminationSignal can take them synchronously.
void BlockTerminationSignals();

}  // namespace dsv3

#endif  // DSV3_COMMON_SERVICE_HOST_H_
