#ifndef DSV3_COMMON_CERTIFICATE_AUTHORITY_H_
#define DSV3_COMMON_CERTIFICATE_AUTHORITY_H_

// A small certificate authority (OpenSSL, ECDSA P-256): what `dsv3 cluster --tls` makes for a
// local run (a throwaway CA and one certificate every process presents), and what the TLS
// tests make their CAs, rotated, expired and foreign certificates with. Production clusters
// bring their own (cert-manager; README "Security").

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dsv3 {

struct PemCertificate {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (PKCS#8)
};

struct CertificateSpec {
  std::string common_name;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  absl::Time not_before = absl::Now() - absl::Hours(1);
  absl::Time not_after = absl::Now() + absl::Hours(24 * 365);
};

// A self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign).
absl::StatusOr<PemCertificate> MakeCertificateAuthority(const CertificateSpec& spec);

// A certificate signed by `ca`, good for TLS servers and clients alike (extendedKeyUsage
// serverAuth, clientAuth), with a random serial.
absl::StatusOr<PemCertificate> IssueCertificate(const PemCertificate& ca,
                                                const CertificateSpec& spec);

// Writes `pem` to `path` (the key files with mode 0600), replacing it atomically: a reader
// sees the old file or the new one, never half of one.
absl::Status WritePemFile(const std::string& path, const std::string& pem);

}  // namespace dsv3

#endif  // DSV3_COMMON_CERTIFICATE_AUTHORITY_H_
