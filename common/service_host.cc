#include "common/service_host.h"

#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/https_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/process_metrics.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on (0.0.0.0 in containers).");
ABSL_FLAG(int, grpc_port, 0, "gRPC port; 0 picks a free one (see --ready_file).");
ABSL_FLAG(int, http_port, 0, "HTTP port for /metrics (and the router's OpenAI API); 0 picks one.");
ABSL_FLAG(int, metrics_port, -1,
          "Port of a listener of its own for /metrics (and the probes), so that the metrics "
          "(which name the workers' addresses) stay off a public --http_port; -1: /metrics on "
          "--http_port; 0 picks one.");
ABSL_FLAG(std::string, ready_file, "",
          "Write {\"role\",\"pid\",\"grpc\",\"http\"} JSON here once listening.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGTERM, how long in-flight requests may run on before they are cancelled (a "
          "decode worker's then resume on another decode worker).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
ABSL_FLAG(bool, log_json, false, "Write logs as JSON lines.");

namespace dsv3 {
namespace {

constexpr char kDrainingJson[] =
    R"({"error":{"message":"the server is shutting down; retry on another replica",)"
    R"("type":"service_unavailable_error","param":null,"code":null}})";

}  // namespace

ServiceHostOptions ServiceHostOptionsFromFlags(const std::string& role) {
  LogConfig log;
  log.role = role;
  log.json = absl::GetFlag(FLAGS_log_json);
  if (!ParseLogLevel(absl::GetFlag(FLAGS_log_level), &log.min_level)) {
    std::fprintf(stderr, "unknown --log_level '%s', using info\n",
                 absl::GetFlag(FLAGS_log_level).c_str());
  }
  ConfigureLogging(log);

  ServiceHostOptions options;
  options.role = role;
  options.host = absl::GetFlag(FLAGS_host);
  options.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  options.keepalive = KeepaliveFromFlags();
  // Every role but the router serves only the cluster's own processes.
  options.tls = TlsFromFlags(/*internal_api=*/role != "router");
  return options;
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ServiceHost::ServiceHost(ServiceHostOptions options) : options_(std::move(options)) {}

ServiceHost::~ServiceHost() { Shutdown(); }

std::string ServiceHost::grpc_address() const {
  return absl::StrCat(options_.host, ":", grpc_port_);
}

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Start(
    ServiceHostOptions options, const std::vector<grpc::Service*>& services) {
  std::unique_ptr<ServiceHost> host(new ServiceHost(std::move(options)));
  const ServiceHostOptions& opts = host->options_;
  DSV3_RETURN_IF_ERROR(CheckTlsConfig(opts.tls));
  RegisterProcessMetrics(opts.role);
  Metrics();  // the whole dsv3_* serving catalog, so /metrics lists every family

  // gRPC, with the built-in grpc.health.v1 service.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, which lets a second process bind a port that is in
  // use and silently share its traffic; a port clash must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ConfigureServerKeepalive(builder, options.keepalive);
  builder.AddListeningPort(absl::StrCat(opts.host, ":", opts.grpc_port),
                           GrpcServerCredentials(opts.tls), &host->grpc_port_);
  for (grpc::Service* s : services) builder.RegisterService(s);
  if (opts.configure_grpc) opts.configure_grpc(builder);
  host->grpc_server_ = builder.BuildAndStart();
  if (host->grpc_server_ == nullptr || host->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", opts.host, ":", opts.grpc_port));
  }

  // HTTP: /metrics, the probes, plus the binary's own routes.
  absl::Status https;
  host->http_server_ = host->NewHttpServer(&https);
  if (host->http_server_ == nullptr) {
    host->grpc_server_->Shutdown();
    return https;
  }
  ServiceHost* self = host.get();
  self->AddHealthRoutes(*host->http_server_, /*metrics=*/opts.metrics_port < 0);
  // While draining, new work gets 503 (OpenAI's error JSON: the router's clients read it)
  // and the connection closes, so that clients open their next one elsewhere.
  host->http_server_->set_pre_routing_handler(
      [self](const httplib::Request& req, httplib::Response& res) {
        if (!self->draining() || req.path == "/metrics" || req.path == "/health/live") {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        res.status = 503;
        res.set_header("Connection", "close");
        res.set_content(kDrainingJson, "application/json");
        return httplib::Server::HandlerResponse::Handled;
      });
  if (opts.add_http_routes) opts.add_http_routes(*host->http_server_);
  if (opts.http_port == 0) {
    host->http_port_ = host->http_server_->bind_to_any_port(opts.host);
  } else if (host->http_server_->bind_to_port(opts.host, opts.http_port)) {
    host->http_port_ = opts.http_port;
  } else {
    host->http_port_ = -1;
  }
  if (host->http_port_ <= 0) {
    host->grpc_server_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", opts.host, ":", opts.http_port));
  }
  host->http_thread_ =
      std::thread([server = host->http_server_.get()] { server->listen_after_bind(); });
  if (opts.metrics_port >= 0) {
    absl::Status metrics = host->StartMetricsServer();
    if (!metrics.ok()) {
      host->Shutdown();
      return metrics;
    }
  }

  host->SetHealth(kLivenessService, true);
  {
    absl::MutexLock lock(&host->mu_);
    host->UpdateReadiness(/*first=*/true);
  }
  host->readiness_thread_ = std::thread([self] { self->WatchReadiness(); });
  DSV3_LOG(INFO) << "listening: grpc " << opts.host << ":" << host->grpc_port_
                 << (opts.tls.server_enabled()
                         ? (opts.tls.require_client_cert ? " (TLS, client certificates required)"
                                                         : " (TLS)")
                         : "")
                 << ", " << (opts.tls.server_enabled() ? "https " : "http ") << opts.host << ":"
                 << host->http_port_
                 << (opts.metrics_port >= 0 ? absl::StrCat(", /metrics on ", host->metrics_port_)
                                            : "");

  if (!opts.ready_file.empty()) {
    // Write then rename, so a reader never sees half a file.
    std::string tmp = opts.ready_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << "{\"role\":\"" << opts.role << "\",\"pid\":" << getpid() << ",\"grpc\":\"" << opts.host
          << ":" << host->grpc_port_ << "\",\"http\":\"" << opts.host << ":" << host->http_port_
          << "\",\"metrics\":\"" << opts.host << ":" << host->metrics_port() << "\"}\n";
      if (!out) return absl::InternalError("cannot write ready file " + tmp);
    }
    if (std::rename(tmp.c_str(), opts.ready_file.c_str()) != 0) {
      return absl::InternalError("cannot write ready file " + opts.ready_file);
    }
  }
  return host;
}

std::unique_ptr<httplib::Server> ServiceHost::NewHttpServer(absl::Status* status) const {
  if (!options_.tls.server_enabled()) return std::make_unique<httplib::Server>();
  absl::StatusOr<std::unique_ptr<httplib::Server>> https = MakeHttpsServer(options_.tls);
  if (!https.ok()) {
    *status = https.status();
    return nullptr;
  }
  return *std::move(https);
}

void ServiceHost::AddHealthRoutes(httplib::Server& server, bool metrics) {
  if (metrics) {
    server.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics::Registry::Default().Expose(),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  server.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"live"})", "application/json");
  });
  server.Get("/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_reported_.load()) {
      res.set_content(R"({"status":"ready"})", "application/json");
    } else {
      res.status = 503;
      res.set_content(draining() ? kDrainingJson
                                 : R"({"error":{"message":"not ready to take work",)"
                                   R"("type":"service_unavailable_error",)"
                                   R"("param":null,"code":null}})",
                      "application/json");
    }
  });
}

absl::Status ServiceHost::StartMetricsServer() {
  absl::Status status;
  metrics_server_ = NewHttpServer(&status);
  if (metrics_server_ == nullptr) return status;
  AddHealthRoutes(*metrics_server_, /*metrics=*/true);
  if (options_.metrics_port == 0) {
    metrics_port_ = metrics_server_->bind_to_any_port(options_.host);
  } else if (metrics_server_->bind_to_port(options_.host, options_.metrics_port)) {
    metrics_port_ = options_.metrics_port;
  }
  if (metrics_port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for /metrics on ", options_.host, ":", options_.metrics_port));
  }
  metrics_thread_ = std::thread([server = metrics_server_.get()] { server->listen_after_bind(); });
  return absl::OkStatus();
}

void ServiceHost::SetHealth(const char* service, bool serving) {
  if (grpc_server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(service, serving);
}

bool ServiceHost::Ready() const { return !draining() && (!options_.ready || options_.ready()); }

void ServiceHost::UpdateReadiness(bool first) {
  const bool ready = Ready();
  if (!first && ready == ready_reported_.load()) return;
  if (!first || !ready) {
    DSV3_LOG(INFO) << (ready ? "ready" : "not ready") << (draining() ? " (draining)" : "");
  }
  SetHealth("", ready);
  SetHealth(kReadinessService, ready);
  ready_reported_.store(ready);
}

void ServiceHost::WatchReadiness() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.ready_interval);
    if (!stopping_) UpdateReadiness(false);
  }
}

void ServiceHost::BeginDrain() {
  if (draining_.exchange(true)) return;
  // At once, not at the next readiness poll: the probes see it now.
  absl::MutexLock lock(&mu_);
  SetHealth("", false);
  SetHealth(kReadinessService, false);
  ready_reported_.store(false);
  DSV3_LOG(INFO) << "draining: not ready, no new work";
}

int ServiceHost::WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  DSV3_LOG(INFO) << "signal " << signal_number << ": draining";
  return signal_number;
}

void ServiceHost::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  BeginDrain();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (readiness_thread_.joinable()) readiness_thread_.join();
  SetHealth(kLivenessService, false);
  if (grpc_server_ != nullptr) {
    // New calls are refused at once; in-flight ones get until the deadline.
    grpc_server_->Shutdown(std::chrono::system_clock::now() +
                           absl::ToChronoNanoseconds(options_.drain_timeout));
    grpc_server_->Wait();
  }
  if (http_server_ != nullptr) http_server_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  if (metrics_server_ != nullptr) metrics_server_->stop();
  if (metrics_thread_.joinable()) metrics_thread_.join();
  DSV3_LOG(INFO) << "stopped";
}

}  // namespace dsv3
