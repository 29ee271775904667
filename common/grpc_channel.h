#ifndef DSV3_COMMON_GRPC_CHANNEL_H_
#define DSV3_COMMON_GRPC_CHANNEL_H_

// A gRPC channel between processes of the cluster (router -> workers, attention workers ->
// expert workers): TLS presenting this process's certificate when --tls_ca is set
// (tls_config.h), else insecure; reconnecting within a
// second after the peer restarts instead of gRPC's default backoff of up to two minutes, and
// with HTTP/2 keepalive pings, so that a call to a peer whose host vanished (or whose
// process stopped) fails within keepalive time + timeout instead of hanging to its deadline.
// Servers (ServiceHost) accept those pings and ping their clients the same way.
// The first ClusterChannel of a process also keeps gRPC's shared callback queue for the
// process's lifetime, so that dropping every channel (a router whose workers were all
// replaced) cannot free it under its own thread (see grpc_channel.cc).

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

// Defined in grpc_channel.cc; read by ClusterChannel and ServiceHost.
ABSL_DECLARE_FLAG(absl::Duration, grpc_keepalive_time);
ABSL_DECLARE_FLAG(absl::Duration, grpc_keepalive_timeout);

namespace dsv3 {

struct KeepaliveOptions {
  absl::Duration time;     // a ping after this long without any frame; 0: no pings
  absl::Duration timeout;  // the connection is dropped when a ping is not answered by then
};

// From --grpc_keepalive_time and --grpc_keepalive_timeout.
KeepaliveOptions KeepaliveFromFlags();

std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& address);
std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& address,
                                              const KeepaliveOptions& keepalive);

// The server side: pings clients that went quiet, and accepts clients' pings as often as
// ClusterChannel sends them.
void ConfigureServerKeepalive(grpc::ServerBuilder& builder, const KeepaliveOptions& keepalive);

}  // namespace dsv3

#endif  // DSV3_COMMON_GRPC_CHANNEL_H_
