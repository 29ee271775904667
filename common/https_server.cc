#include "common/https_server.h"

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls_identity.h"

namespace dsv3 {
namespace {

// The certificate files, re-read when their modification time, size or inode changes
// (cert-manager swaps a symlinked directory; an editor rewrites in place).
class CertificateFiles {
 public:
  explicit CertificateFiles(TlsConfig tls) : tls_(std::move(tls)) {}

  absl::Status Load() {
    absl::MutexLock lock(&mu_);
    DSV3_ASSIGN_OR_RETURN(current_, LoadTlsIdentity(tls_.cert, tls_.key));
    stamp_ = Stamp();
    checked_ = absl::Now();
    return absl::OkStatus();
  }

  // The identity to present now; a broken new file keeps the old one (and says so).
  std::shared_ptr<const TlsIdentity> Current() {
    absl::MutexLock lock(&mu_);
    if (absl::Now() - checked_ < tls_.refresh) return current_;
    checked_ = absl::Now();
    std::string stamp = Stamp();
    if (stamp == stamp_) return current_;
    auto identity = LoadTlsIdentity(tls_.cert, tls_.key);
    if (!identity.ok()) {
      DSV3_LOG(WARNING) << "TLS: keeping the current certificate: " << identity.status();
      return current_;
    }
    DSV3_LOG(INFO) << "TLS: " << tls_.cert << " changed; new connections get the new certificate";
    current_ = *std::move(identity);
    stamp_ = std::move(stamp);
    return current_;
  }

 private:
  std::string Stamp() const {
    std::string out;
    for (const std::string& path : {tls_.cert, tls_.key}) {
      struct stat st {};
      if (stat(path.c_str(), &st) != 0) return "missing";
      absl::StrAppend(&out, st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec, ";");
    }
    return out;
  }

  const TlsConfig tls_;
  absl::Mutex mu_;
  std::shared_ptr<const TlsIdentity> current_ ABSL_GUARDED_BY(mu_);
  std::string stamp_ ABSL_GUARDED_BY(mu_);
  absl::Time checked_ ABSL_GUARDED_BY(mu_);
};

// OpenSSL asks for the certificate at each handshake.
int PresentCertificate(SSL* ssl, void* arg) {
  std::shared_ptr<const TlsIdentity> identity = static_cast<CertificateFiles*>(arg)->Current();
  // SSL_use_cert_and_key takes its own references.
  return SSL_use_cert_and_key(ssl, identity->leaf, identity->key, identity->chain, 1) == 1 ? 1 : 0;
}

// Holds the files for as long as the server that points OpenSSL at them (a base class so
// that it is built before the SSLServer base that uses it).
struct FilesHolder {
  std::unique_ptr<CertificateFiles> files;
};

// Sets up the context SSLServer's constructor makes. A free function: while the SSLServer
// base is being built, the HttpsServer is not an object yet (UBSan reports a member call).
bool SetUpContext(SSL_CTX& ctx, CertificateFiles* files) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cert_cb(&ctx, PresentCertificate, files);
  return true;
}

class HttpsServer : private FilesHolder, public httplib::SSLServer {
 public:
  explicit HttpsServer(std::unique_ptr<CertificateFiles> files)
      : FilesHolder{std::move(files)},
        httplib::SSLServer(
            [raw = FilesHolder::files.get()](SSL_CTX& ctx) { return SetUpContext(ctx, raw); }) {}
};

}  // namespace

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeHttpsServer(const TlsConfig& tls) {
  auto files = std::make_unique<CertificateFiles>(tls);
  if (absl::Status loaded = files->Load(); !loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS: ", loaded.message()));
  }
  auto server = std::make_unique<HttpsServer>(std::move(files));
  if (!server->is_valid()) return absl::InternalError("TLS: cannot create an OpenSSL context");
  return server;
}

}  // namespace dsv3
