#include "common/tls_config.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/tls_identity.h"

ABSL_FLAG(std::string, tls_cert, "",
          "TLS: this process's PEM certificate chain; with it the gRPC and HTTP ports serve TLS "
          "only, and calls to peers present it (mutual TLS).");
ABSL_FLAG(std::string, tls_key, "", "TLS: the private key of --tls_cert (PEM).");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: the PEM bundle of the CA peers' certificates must chain to; with it calls to "
          "other processes (and the router, from the dsv3 clients) use TLS.");
ABSL_FLAG(std::optional<bool>, tls_require_client_cert, std::nullopt,
          "TLS: the gRPC port refuses clients without a certificate signed by --tls_ca. "
          "Default: on for the workers and the rebalancer (internal APIs), off for the router "
          "(its clients use API keys).");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: the name servers' certificates must carry, when not the host of the address "
          "dialed (e.g. workers dialed by pod IP under one cluster-internal name).");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Seconds(10),
          "TLS: how often the certificate, key and CA files are checked for changes (a "
          "rotated certificate is used for new connections without a restart).");

namespace dsv3 {
namespace {

unsigned RefreshSeconds(const TlsConfig& tls) {
  return static_cast<unsigned>(std::clamp<int64_t>(absl::ToInt64Seconds(tls.refresh), 1, 86400));
}

}  // namespace

TlsConfig TlsFromFlags(bool internal_api) {
  TlsConfig tls;
  tls.cert = absl::GetFlag(FLAGS_tls_cert);
  tls.key = absl::GetFlag(FLAGS_tls_key);
  tls.ca = absl::GetFlag(FLAGS_tls_ca);
  tls.require_client_cert =
      tls.server_enabled() && absl::GetFlag(FLAGS_tls_require_client_cert).value_or(internal_api);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  tls.refresh = absl::GetFlag(FLAGS_tls_refresh_interval);
  return tls;
}

absl::Status CheckTlsConfig(const TlsConfig& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("TLS: --tls_cert and --tls_key go together");
  }
  if (absl::GetFlag(FLAGS_tls_require_client_cert).value_or(false) && tls.cert.empty()) {
    return absl::InvalidArgumentError("TLS: --tls_require_client_cert needs --tls_cert");
  }
  if (tls.require_client_cert && tls.ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS: client certificates are required (--tls_require_client_cert) but there is no "
        "--tls_ca to check them against");
  }
  if (!tls.cert.empty()) {
    auto identity = LoadTlsIdentity(tls.cert, tls.key);
    if (!identity.ok())
      return absl::InvalidArgumentError(absl::StrCat("TLS: ", identity.status().message()));
  }
  if (!tls.ca.empty()) {
    BIO* bio = BIO_new_file(tls.ca.c_str(), "r");
    X509* ca = bio != nullptr ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    const bool readable = ca != nullptr;
    X509_free(ca);
    if (!readable) {
      ERR_clear_error();
      return absl::InvalidArgumentError("TLS: no readable PEM certificate in " + tls.ca);
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsConfig& tls) {
  if (!tls.server_enabled()) return grpc::InsecureServerCredentials();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key, tls.cert, tls.require_client_cert ? tls.ca : "", RefreshSeconds(tls));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.require_client_cert) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> GrpcChannelCredentials(const TlsConfig& tls) {
  if (!tls.client_enabled()) return grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (tls.cert.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        tls.ca, RefreshSeconds(tls));
  } else {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        tls.key, tls.cert, tls.ca, RefreshSeconds(tls));
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (!tls.cert.empty()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

void AddTlsChannelArgs(const TlsConfig& tls, grpc::ChannelArguments& args) {
  if (tls.client_enabled() && !tls.server_name.empty()) {
    args.SetSslTargetNameOverride(tls.server_name);
  }
}

std::shared_ptr<grpc::Channel> ClientChannel(const std::string& address,
                                             grpc::ChannelArguments args) {
  // One set of credentials per process, from the flags as they are at the first channel:
  // with TLS it watches the certificate files (a thread), shared by every channel. Never
  // destroyed: channels may outlive static destruction at exit.
  struct FromFlags {
    TlsConfig tls;
    std::shared_ptr<grpc::ChannelCredentials> credentials;
  };
  static const FromFlags* const from_flags = [] {
    auto* f = new FromFlags{TlsFromFlags(/*internal_api=*/false), nullptr};
    f->credentials = GrpcChannelCredentials(f->tls);
    return f;
  }();
  AddTlsChannelArgs(from_flags->tls, args);
  return grpc::CreateCustomChannel(address, from_flags->credentials, args);
}

}  // namespace dsv3
