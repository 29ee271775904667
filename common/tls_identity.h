#ifndef DSV3_COMMON_TLS_IDENTITY_H_
#define DSV3_COMMON_TLS_IDENTITY_H_

// A certificate chain and its private key read from PEM files, as OpenSSL objects: what
// CheckTlsConfig validates at start-up and what the HTTPS server presents at each handshake.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct x509_st;        // X509
struct evp_pkey_st;    // EVP_PKEY
struct stack_st_X509;  // STACK_OF(X509)

namespace dsv3 {

struct TlsIdentity {
  x509_st* leaf = nullptr;
  stack_st_X509* chain = nullptr;  // intermediates after the leaf
  evp_pkey_st* key = nullptr;

  TlsIdentity() = default;
  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;
  ~TlsIdentity();
};

// INVALID_ARGUMENT naming the file: unreadable, no PEM certificate in it, or a key that is
// not the certificate's.
absl::StatusOr<std::shared_ptr<const TlsIdentity>> LoadTlsIdentity(const std::string& cert_path,
                                                                   const std::string& key_path);

}  // namespace dsv3

#endif  // DSV3_COMMON_TLS_IDENTITY_H_
