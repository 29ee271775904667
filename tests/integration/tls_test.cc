// TLS on every port and mutual TLS between the processes, as a user switches it on: a real
// worker binary and a real `dsv3 cluster` with certificates from their own CAs (made with
// common/certificate_authority.h). Checks what the issue asks: a plaintext client refused on
// a TLS port; a client certificate from another CA, an expired one, or none refused by an
// internal port; a server the client's CA did not sign refused; a rotated certificate taken
// up while a stream runs on; the official OpenAI SDK, curl-like HTTPS and the dsv3 CLI
// served over TLS.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/certificate_authority.h"
#include "common/tls_config.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::Cluster;
using ::dsv3::testing::kGolden;
using ::dsv3::testing::RunCommand;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;

// The certificates of the tests, as files in one directory: the cluster's CA and a
// certificate it signed for 127.0.0.1 (and the cluster-internal name "dsv3-internal"), a
// second one it signed (the rotation), an expired one, and a foreign CA with its own.
class Certificates {
 public:
  Certificates() : dir_(testing::MakeTempDir("tls")) {
    CertificateSpec ca_spec;
    ca_spec.common_name = "test cluster CA";
    PemCertificate ca = *MakeCertificateAuthority(ca_spec);
    Write("ca", ca);
    CertificateSpec spec{.common_name = "server",
                         .dns_names = {"localhost", "dsv3-internal"},
                         .ip_addresses = {"127.0.0.1"}};
    Write("server", *IssueCertificate(ca, spec));
    spec.common_name = "rotated";
    Write("rotated", *IssueCertificate(ca, spec));
    spec.common_name = "expired";
    spec.not_before = absl::Now() - absl::Hours(48);
    spec.not_after = absl::Now() - absl::Hours(1);
    Write("expired", *IssueCertificate(ca, spec));
    ca_spec.common_name = "another CA";
    PemCertificate foreign_ca = *MakeCertificateAuthority(ca_spec);
    Write("foreign-ca", foreign_ca);
    spec = {.common_name = "foreign", .dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1"}};
    Write("foreign", *IssueCertificate(foreign_ca, spec));
  }

  std::string cert(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string key(const std::string& name) const { return dir_ + "/" + name + ".key"; }
  const std::string& dir() const { return dir_; }

  // A client config: trusting `ca`, presenting `identity` ("" for none).
  TlsConfig Client(const std::string& ca, const std::string& identity) const {
    TlsConfig tls;
    tls.ca = cert(ca);
    if (!identity.empty()) {
      tls.cert = cert(identity);
      tls.key = key(identity);
    }
    return tls;
  }

 private:
  void Write(const std::string& name, const PemCertificate& pem) {
    ASSERT_TRUE(WritePemFile(cert(name), pem.cert).ok());
    ASSERT_TRUE(WritePemFile(key(name), pem.key).ok());
  }
  std::string dir_;
};

std::string CommonName(X509* cert) {
  char cn[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

// The common name of a PEM certificate ("" when it does not parse).
std::string CommonName(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return "";
  std::string cn = CommonName(cert);
  X509_free(cert);
  return cn;
}

// A gRPC channel of its own (its own connection, so its own handshake) with `tls`.
std::shared_ptr<grpc::Channel> Channel(const std::string& address, const TlsConfig& tls) {
  static int n = 0;
  grpc::ChannelArguments args;
  args.SetInt("dsv3.test_channel", ++n);
  AddTlsChannelArgs(tls, args);
  return grpc::CreateCustomChannel(address, GrpcChannelCredentials(tls), args);
}

// A worker's GetInfo over `channel`; the common name of the certificate the server showed.
grpc::Status GetInfo(const std::shared_ptr<grpc::Channel>& channel,
                     std::string* server_cn = nullptr) {
  auto stub = v1::WorkerStatus::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WorkerInfo info;
  grpc::Status status = stub->GetInfo(&ctx, v1::GetInfoRequest(), &info);
  if (server_cn != nullptr && ctx.auth_context() != nullptr) {
    auto pem = ctx.auth_context()->FindPropertyValues("x509_pem_cert");
    *server_cn = pem.empty() ? "" : CommonName(std::string(pem[0].data(), pem[0].size()));
  }
  return status;
}

// The common name of the certificate an HTTPS port presents to a client trusting `ca`, over
// a raw OpenSSL connection ("" when the handshake fails).
std::string HttpsServerName(const std::string& host_port, const std::string& ca) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  BIO* bio = BIO_new_ssl_connect(ctx);
  BIO_set_conn_hostname(bio, host_port.c_str());
  std::string cn;
  if (BIO_do_connect(bio) > 0 && BIO_do_handshake(bio) > 0) {
    SSL* ssl = nullptr;
    BIO_get_ssl(bio, &ssl);
    X509* peer = SSL_get1_peer_certificate(ssl);
    if (peer != nullptr) {
      cn = CommonName(peer);
      X509_free(peer);
    }
  }
  BIO_free_all(bio);
  SSL_CTX_free(ctx);
  return cn;
}

httplib::Client Https(const std::string& host_port, const std::string& ca) {
  httplib::Client client("https://" + host_port);
  client.set_ca_cert_path(ca.c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(5);
  return client;
}

TEST(TlsTest, AnInternalPortTakesOnlyClientsWithAClusterCertificate) {
  Certificates certs;
  const std::string ready = certs.dir() + "/prefill.ready";
  auto process =
      Subprocess::Start({BinaryPath("dsv3-prefill"), std::string("--model=") + kGolden,
                         "--ready_file=" + ready, "--tls_cert=" + certs.cert("server"),
                         "--tls_key=" + certs.key("server"), "--tls_ca=" + certs.cert("ca")},
                        certs.dir() + "/prefill.log");
  ASSERT_TRUE(process.ok()) << process.status();
  auto info = testing::WaitForReadyFile(ready, *process, absl::Seconds(30));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(process->ReadLog(), HasSubstr("(TLS, client certificates required)"));

  // A client with a certificate the cluster's CA signed is served.
  std::string server_cn;
  grpc::Status ok = GetInfo(Channel(info->grpc, certs.Client("ca", "server")), &server_cn);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(server_cn, "server");

  // Everyone else is refused at the handshake.
  EXPECT_EQ(
      GetInfo(grpc::CreateChannel(info->grpc, grpc::InsecureChannelCredentials())).error_code(),
      grpc::StatusCode::UNAVAILABLE)
      << "plaintext";
  EXPECT_EQ(GetInfo(Channel(info->grpc, certs.Client("ca", ""))).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "no client certificate";
  EXPECT_EQ(GetInfo(Channel(info->grpc, certs.Client("ca", "foreign"))).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client certificate from another CA";
  EXPECT_EQ(GetInfo(Channel(info->grpc, certs.Client("ca", "expired"))).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "an expired client certificate";
  EXPECT_EQ(GetInfo(Channel(info->grpc, certs.Client("foreign-ca", "foreign"))).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a server the client's CA did not sign";

  // The server's name: checked against the address dialed, or the name given instead.
  TlsConfig named = certs.Client("ca", "server");
  named.server_name = "dsv3-internal";
  EXPECT_TRUE(GetInfo(Channel(info->grpc, named)).ok());
  named.server_name = "elsewhere.example";
  EXPECT_EQ(GetInfo(Channel(info->grpc, named)).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a certificate without the name asked for";

  // HTTP is HTTPS only: /metrics for a client trusting the CA, nothing in plaintext.
  auto metrics = Https(info->http, certs.cert("ca")).Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->body, HasSubstr("dsv3_build_info{"));
  httplib::Client plain("http://" + info->http);
  plain.set_connection_timeout(5);
  plain.set_read_timeout(5);
  EXPECT_FALSE(plain.Get("/metrics")) << "plaintext HTTP on a TLS port";
  EXPECT_FALSE(Https(info->http, certs.cert("foreign-ca")).Get("/metrics"))
      << "an HTTPS client that does not trust the cluster's CA";
}

TEST(TlsTest, AMisconfiguredServerRefusesToStart) {
  Certificates certs;
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert=" + certs.cert("server"), "--tls_key=" + certs.key("foreign"),
        "--tls_ca=" + certs.cert("ca")},
       "is not the private key of"},
      {{"--tls_cert=" + certs.cert("server"), "--tls_key=" + certs.key("server")},
       "no --tls_ca to check them against"},
      {{"--tls_cert=" + certs.cert("server")}, "--tls_cert and --tls_key go together"},
      {{"--tls_cert=" + certs.dir() + "/missing.pem", "--tls_key=" + certs.key("server"),
        "--tls_ca=" + certs.cert("ca")},
       "cannot read certificate"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {BinaryPath("dsv3-rebalancer"), "--expert_workers="};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto process = Subprocess::Start(argv, certs.dir() + "/misconfigured.log");
    ASSERT_TRUE(process.ok());
    auto code = process->Wait(absl::Seconds(20));
    ASSERT_TRUE(code.ok()) << "still running with " << c.flags[0];
    EXPECT_EQ(*code, 1);
    EXPECT_THAT(process->ReadLog(), HasSubstr(c.error));
  }
}

TEST(TlsTest, ClusterServesOverTlsAndTakesUpARotatedCertificate) {
  Certificates certs;
  // The files every process of the cluster reads, rotated in place below.
  const std::string live_cert = certs.dir() + "/live.pem", live_key = certs.dir() + "/live.key";
  ASSERT_TRUE(WritePemFile(live_cert, testing::ReadFile(certs.cert("server"))).ok());
  ASSERT_TRUE(WritePemFile(live_key, testing::ReadFile(certs.key("server"))).ok());
  const std::string ca = certs.cert("ca");
  auto cluster = Cluster::Start(kGolden, 1, 1, 18600, 128,
                                {"--tls_cert=" + live_cert, "--tls_key=" + live_key,
                                 "--tls_ca=" + ca, "--tls_refresh_interval=1s"});
  ASSERT_NE(cluster, nullptr);
  const TlsConfig client = certs.Client("ca", "");
  const testing::Golden golden = testing::GoldenCases()[0];

  // A stream started on the first certificate...
  auto stub = v1::Inference::NewStub(Channel(cluster->router(), client));
  grpc::ClientContext stream_ctx;
  stream_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream =
      stub->Generate(&stream_ctx, testing::IdsRequest(golden.prompt, golden.greedy.size()));
  v1::GenerateResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<int32_t> ids(response.token_ids().begin(), response.token_ids().end());
  auto pem = stream_ctx.auth_context()->FindPropertyValues("x509_pem_cert");
  ASSERT_EQ(pem.size(), 1u);
  EXPECT_EQ(CommonName(std::string(pem[0].data(), pem[0].size())), "server");
  EXPECT_EQ(HttpsServerName(cluster->Address("router", "http"), ca), "server");

  // ...the certificate rotated (as cert-manager does: new files in place of the old)...
  ASSERT_TRUE(WritePemFile(live_key, testing::ReadFile(certs.key("rotated"))).ok());
  ASSERT_TRUE(WritePemFile(live_cert, testing::ReadFile(certs.cert("rotated"))).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  std::string grpc_cn, https_cn;
  while (absl::Now() < deadline && (grpc_cn != "rotated" || https_cn != "rotated")) {
    absl::SleepFor(absl::Milliseconds(250));
    auto fresh = v1::Inference::NewStub(Channel(cluster->router(), client));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListModelsResponse models;
    if (fresh->ListModels(&ctx, v1::ListModelsRequest(), &models).ok()) {
      auto seen = ctx.auth_context()->FindPropertyValues("x509_pem_cert");
      if (!seen.empty()) grpc_cn = CommonName(std::string(seen[0].data(), seen[0].size()));
    }
    https_cn = HttpsServerName(cluster->Address("router", "http"), ca);
  }
  // ...new connections get the new certificate, without a restart...
  EXPECT_EQ(grpc_cn, "rotated");
  EXPECT_EQ(https_cn, "rotated");

  // ...and the stream runs on to the golden end.
  while (stream->Read(&response)) {
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
  }
  grpc::Status finished = stream->Finish();
  EXPECT_TRUE(finished.ok()) << finished.error_message();
  EXPECT_EQ(ids, golden.greedy);

  // The workers took the rotation too: a new request goes router -> prefill -> decode
  // with the rotated certificates on new connections to a restarted-free cluster.
  testing::GrpcResult again;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Generate(&ctx, testing::IdsRequest(golden.prompt, golden.greedy.size()));
    while (reader->Read(&response)) {
      again.ids.insert(again.ids.end(), response.token_ids().begin(), response.token_ids().end());
    }
    again.status = reader->Finish();
  }
  EXPECT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.ids, golden.greedy);

  // Plaintext is refused on both of the router's ports.
  EXPECT_FALSE(cluster->Http().Get("/health/ready")) << "plaintext HTTP";
  auto insecure = v1::Inference::NewStub(
      grpc::CreateChannel(cluster->router(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListModelsResponse models;
  EXPECT_EQ(insecure->ListModels(&ctx, v1::ListModelsRequest(), &models).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // The clients users run: the OpenAI SDK trusting the CA (NODE_EXTRA_CA_CERTS), and not;
  // the dsv3 CLI with --tls_ca, and without.
  const std::string sdk =
      absl::StrCat("node " DSV3_SOURCE_DIR "/tests/integration/openai_sdk_tls.mjs https://",
                   cluster->Address("router", "http"), "/v1 tiny-v3-bf16 ");
  auto [trusted_rc, trusted_out] = RunCommand("NODE_EXTRA_CA_CERTS=" + ca + " " + sdk + "trusted");
  EXPECT_EQ(trusted_rc, 0) << trusted_out;
  auto [untrusted_rc, untrusted_out] =
      RunCommand("env -u NODE_EXTRA_CA_CERTS " + sdk + "untrusted");
  EXPECT_EQ(untrusted_rc, 0) << untrusted_out;
  const std::string complete = absl::StrCat(BinaryPath("dsv3"), " complete --router ",
                                            cluster->router(), " --tokens '0 17 5' --max_tokens 2");
  auto [cli_rc, cli_out] = RunCommand(complete + " --tls_ca " + ca);
  EXPECT_EQ(cli_rc, 0) << cli_out;
  auto [plain_rc, plain_out] = RunCommand(complete);
  EXPECT_NE(plain_rc, 0) << plain_out;
}

}  // namespace
}  // namespace dsv3
