#include "tools/cluster_tls.h"

#include <sys/stat.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/certificate_authority.h"
#include "common/status_macros.h"
#include "common/tls_config.h"

ABSL_FLAG(bool, tls, false,
          "dsv3 cluster: TLS on every gRPC and HTTP port, mutual TLS between the processes. "
          "With --tls_cert/--tls_key/--tls_ca those files; without, a throwaway CA and "
          "certificate made in LOG_DIR/tls.");

namespace dsv3::tools {

absl::StatusOr<ClusterTls> SetUpClusterTls(const std::string& log_dir) {
  ClusterTls tls;
  tls.enabled = absl::GetFlag(FLAGS_tls) || !absl::GetFlag(FLAGS_tls_cert).empty();
  if (!tls.enabled) return tls;
  if (absl::GetFlag(FLAGS_tls_cert).empty()) {
    const std::string dir = log_dir + "/tls";
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError("cannot create " + dir);
    }
    CertificateSpec ca_spec;
    ca_spec.common_name = "dsv3 cluster local CA";
    DSV3_ASSIGN_OR_RETURN(auto ca, MakeCertificateAuthority(ca_spec));
    CertificateSpec spec;
    spec.common_name = "dsv3-cluster";
    spec.dns_names = {"localhost"};
    spec.ip_addresses = {"127.0.0.1", "::1"};
    DSV3_ASSIGN_OR_RETURN(auto cert, IssueCertificate(ca, spec));
    for (const auto& [name, pem] : {std::pair<std::string, std::string>{"ca.pem", ca.cert},
                                    {"cluster.pem", cert.cert},
                                    {"cluster.key", cert.key}}) {
      DSV3_RETURN_IF_ERROR(WritePemFile(dir + "/" + name, pem));
    }
    // The CA's key is not kept: nothing else gets signed by it.
    absl::SetFlag(&FLAGS_tls_cert, dir + "/cluster.pem");
    absl::SetFlag(&FLAGS_tls_key, dir + "/cluster.key");
    absl::SetFlag(&FLAGS_tls_ca, dir + "/ca.pem");
  }
  const TlsConfig config = TlsFromFlags(/*internal_api=*/false);
  if (config.ca.empty()) {
    return absl::InvalidArgumentError(
        "dsv3 cluster: --tls_cert needs --tls_ca (the CA that "
        "signed the processes' certificates)");
  }
  DSV3_RETURN_IF_ERROR(CheckTlsConfig(config));
  tls.ca = config.ca;
  tls.process_flags = {"--tls_cert=" + config.cert, "--tls_key=" + config.key,
                       "--tls_ca=" + config.ca,
                       "--tls_refresh_interval=" + absl::FormatDuration(config.refresh)};
  return tls;
}

}  // namespace dsv3::tools
