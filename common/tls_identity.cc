#include "common/tls_identity.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"

namespace dsv3 {

TlsIdentity::~TlsIdentity() {
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  EVP_PKEY_free(key);
}

absl::StatusOr<std::shared_ptr<const TlsIdentity>> LoadTlsIdentity(const std::string& cert_path,
                                                                   const std::string& key_path) {
  auto identity = std::make_shared<TlsIdentity>();
  BIO* bio = BIO_new_file(cert_path.c_str(), "r");
  if (bio == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("cannot read certificate " + cert_path);
  }
  identity->leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  identity->chain = sk_X509_new_null();
  while (X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    sk_X509_push(identity->chain, extra);
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the file reads as an error
  if (identity->leaf == nullptr) {
    return absl::InvalidArgumentError("no PEM certificate in " + cert_path);
  }
  bio = BIO_new_file(key_path.c_str(), "r");
  if (bio == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("cannot read key " + key_path);
  }
  identity->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (identity->key == nullptr || X509_check_private_key(identity->leaf, identity->key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, " is not the private key of ", cert_path));
  }
  return std::shared_ptr<const TlsIdentity>(std::move(identity));
}

}  // namespace dsv3
