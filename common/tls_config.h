#ifndef DSV3_COMMON_TLS_CONFIG_H_
#define DSV3_COMMON_TLS_CONFIG_H_

// TLS for every listener and every channel of the cluster, from one set of flags that every
// binary (and the `dsv3` clients) has:
//
//   --tls_cert, --tls_key  the PEM certificate chain and key this process presents: as a
//                          server on its gRPC and HTTP ports, and as a client of its peers
//                          (mutual TLS)
//   --tls_ca               the PEM bundle of the CA that peers' certificates must chain to:
//                          clients verify servers with it, servers verify client certificates
//   --tls_require_client_cert
//                          a server refuses clients without a certificate signed by --tls_ca;
//                          by default on for the internal APIs (prefill, decode, expert
//                          workers, rebalancer), off for the router, whose clients
//                          authenticate with API keys
//   --tls_server_name      the name a server's certificate must carry, when it is not the
//                          host of the address dialed (pods dialed by IP)
//
// The files are re-read when they change (cert-manager rotates them in place): new
// connections get the new certificate, connections open on the old one run on.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::optional<bool>, tls_require_client_cert);
ABSL_DECLARE_FLAG(std::string, tls_server_name);
ABSL_DECLARE_FLAG(absl::Duration, tls_refresh_interval);

namespace dsv3 {

struct TlsConfig {
  std::string cert;  // PEM chain, leaf first
  std::string key;   // PEM private key of the leaf
  std::string ca;    // PEM bundle peers' certificates must chain to
  bool require_client_cert = false;
  std::string server_name;  // clients: overrides the host checked against the server's cert
  absl::Duration refresh = absl::Seconds(10);

  // A server listens with TLS when it has a certificate; a client dials with TLS when it
  // has a CA to check the server against.
  bool server_enabled() const { return !cert.empty(); }
  bool client_enabled() const { return !ca.empty(); }
};

// From the flags. `internal_api`: the process serves only the cluster's internal APIs, so by
// default it wants client certificates.
TlsConfig TlsFromFlags(bool internal_api);

// That the files are there, parse, the key matches the certificate, and a server that wants
// client certificates has a CA to check them against: a misconfiguration fails at start-up,
// not at every handshake.
absl::Status CheckTlsConfig(const TlsConfig& tls);

// gRPC server credentials: TLS with the certificate (and, when required, client
// certificates verified against the CA), re-read as the files change.
std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsConfig& tls);

// gRPC channel credentials: TLS verifying the server against the CA and its name, presenting
// the certificate when there is one; insecure when the config has no CA. Add the channel
// arguments too (the server-name override).
std::shared_ptr<grpc::ChannelCredentials> GrpcChannelCredentials(const TlsConfig& tls);
void AddTlsChannelArgs(const TlsConfig& tls, grpc::ChannelArguments& args);

// A channel to `address` with the flags' TLS (insecure when --tls_ca is not set): a client
// tool's to the router (or a worker, for `dsv3 bench`), and ClusterChannel's between the
// processes. The flags are read at the first call.
std::shared_ptr<grpc::Channel> ClientChannel(const std::string& address,
                                             grpc::ChannelArguments args = {});

}  // namespace dsv3

#endif  // DSV3_COMMON_TLS_CONFIG_H_
