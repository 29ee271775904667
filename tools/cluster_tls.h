#ifndef DSV3_TOOLS_CLUSTER_TLS_H_
#define DSV3_TOOLS_CLUSTER_TLS_H_

// `dsv3 cluster --tls`: TLS on every port of the local cluster. Without --tls_cert it makes
// a throwaway CA and one certificate (for 127.0.0.1 and localhost) that every process
// presents, in LOG_DIR/tls; the workers then take only clients presenting it (mutual TLS),
// the router any client that trusts the CA.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv3::tools {

struct ClusterTls {
  bool enabled = false;
  std::string ca;  // the CA bundle clients trust (LOG_DIR/tls/ca.pem when made here)
  // Flags every process of the cluster gets.
  std::vector<std::string> process_flags;
  std::string scheme() const { return enabled ? "https" : "http"; }
};

// Reads --tls, --tls_cert, --tls_key, --tls_ca; makes the certificates when asked to, and
// sets this process's --tls_* flags so that its own checks of the cluster use them.
absl::StatusOr<ClusterTls> SetUpClusterTls(const std::string& log_dir);

}  // namespace dsv3::tools

#endif  // DSV3_TOOLS_CLUSTER_TLS_H_
