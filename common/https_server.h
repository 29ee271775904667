#ifndef DSV3_COMMON_HTTPS_SERVER_H_
#define DSV3_COMMON_HTTPS_SERVER_H_

// The HTTP server of a process (the OpenAI API, /metrics, the probes) over TLS: cpp-httplib
// on OpenSSL, TLS 1.2 or later. Its certificate and key are re-read when their files change
// (checked at most every TlsConfig::refresh, at a handshake): new connections get the new
// certificate, open ones run on. It asks no client certificate: its clients are OpenAI SDKs,
// Prometheus and the kubelet's probes (the router's clients authenticate with API keys).

#include <httplib.h>

#include <memory>

#include "absl/status/statusor.h"
#include "common/tls_config.h"

namespace dsv3 {

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeHttpsServer(const TlsConfig& tls);

}  // namespace dsv3

#endif  // DSV3_COMMON_HTTPS_SERVER_H_
