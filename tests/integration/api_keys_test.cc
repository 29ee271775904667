// API keys at the router of a real cluster (`dsv3 cluster --api_keys FILE`): the official
// OpenAI SDK as the client (tests/integration/openai_sdk_api_keys.mjs: 401, 429 and the
// SDK's retry, key rotation through the file), real gRPC stubs with and without the
// `authorization` metadata, curl-like HTTP without a key, open probes, and /metrics per key
// name with no secret in it.

#include "router/api_keys.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::Cluster;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::kGolden;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAlice[] = "sk-alice-7d1f0c5e9a3b2468";
constexpr char kBob[] = "sk-bob-c4e8a2f61b9d3057";

// One Generate with `key` ("" for none) as authorization metadata.
grpc::Status GenerateWithKey(const std::string& router, const std::string& key,
                             std::multimap<std::string, std::string>* trailers = nullptr) {
  auto stub =
      v1::Inference::NewStub(grpc::CreateChannel(router, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  auto reader = stub->Generate(&ctx, IdsRequest({0, 17, 5}, 2));
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  grpc::Status status = reader->Finish();
  if (trailers != nullptr) {
    for (const auto& [k, v] : ctx.GetServerTrailingMetadata()) {
      trailers->emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    }
  }
  return status;
}

TEST(ApiKeysTest, OnlyKeyHoldersAreServedWithinTheirLimits) {
  const std::string dir = testing::MakeTempDir("api-keys");
  const std::string keys = dir + "/keys";
  // bob's key is given as its hash: the file need not hold the secret.
  std::ofstream(keys) << "alice " << kAlice << "\n"
                      << "bob sha256:" << router::Sha256Hex(kBob) << " rps=1\n";
  auto cluster = Cluster::Start(kGolden, 1, 1, 18560, 128, {"--api_keys=" + keys});
  ASSERT_NE(cluster, nullptr);

  // gRPC: no key, a wrong key, alice's; bob over his one request a second.
  EXPECT_EQ(GenerateWithKey(cluster->router(), "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GenerateWithKey(cluster->router(), "sk-wrong-0123456789abcd").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status ok = GenerateWithKey(cluster->router(), kAlice);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_TRUE(GenerateWithKey(cluster->router(), kBob).ok());
  std::multimap<std::string, std::string> trailers;
  grpc::Status limited = GenerateWithKey(cluster->router(), kBob, &trailers);
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(), HasSubstr("1 requests per second"));
  ASSERT_EQ(trailers.count("retry-after-ms"), 1u);
  EXPECT_GT(std::stoi(trailers.find("retry-after-ms")->second), 0);
  {
    auto stub = v1::Inference::NewStub(
        grpc::CreateChannel(cluster->router(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::ListModelsResponse models;
    EXPECT_EQ(stub->ListModels(&ctx, v1::ListModelsRequest(), &models).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  // HTTP without a key: 401 in OpenAI's form; the probes stay open.
  httplib::Client http = cluster->Http();
  auto unauthenticated =
      http.Post("/v1/completions", R"({"prompt":[1,2],"max_tokens":1})", "application/json");
  ASSERT_TRUE(unauthenticated);
  EXPECT_EQ(unauthenticated->status, 401);
  EXPECT_EQ(unauthenticated->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_THAT(unauthenticated->body, HasSubstr("\"code\":\"invalid_api_key\""));
  auto models = http.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  for (const char* probe : {"/health", "/health/ready", "/health/live"}) {
    auto res = http.Get(probe);
    ASSERT_TRUE(res) << probe;
    EXPECT_EQ(res->status, 200) << probe;
  }

  // The CLI presents a key from $DSV3_API_KEY (or --api_key).
  const std::string complete = absl::StrCat(testing::BinaryPath("dsv3"), " complete --router ",
                                            cluster->router(), " --tokens '0 17 5' --max_tokens 2");
  auto [cli_rc, cli_out] =
      testing::RunCommand(absl::StrCat("DSV3_API_KEY=", kAlice, " ", complete));
  EXPECT_EQ(cli_rc, 0) << cli_out;
  auto [no_key_rc, no_key_out] = testing::RunCommand("env -u DSV3_API_KEY " + complete);
  EXPECT_NE(no_key_rc, 0) << no_key_out;
  EXPECT_THAT(no_key_out, HasSubstr("API key"));

  // The OpenAI SDK, as users call the API.
  absl::SleepFor(absl::Seconds(1));  // bob's bucket refills
  auto [rc, out] = testing::RunCommand(absl::StrCat(
      "node " DSV3_SOURCE_DIR "/tests/integration/openai_sdk_api_keys.mjs http://",
      cluster->Address("router", "http"), "/v1 tiny-v3-bf16 ", keys, " ", kAlice, " ", kBob));
  EXPECT_EQ(rc, 0) << out;

  // Per key name on /metrics, and never a key.
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body,
              HasSubstr("dsv3_api_key_requests_total{key=\"bob\",result=\"rate_limited\"}"));
  EXPECT_THAT(metrics->body, HasSubstr("dsv3_api_key_tokens_total{key=\"alice\"}"));
  EXPECT_THAT(metrics->body, HasSubstr("dsv3_api_key_rejected_total{reason=\"invalid\"}"));
  EXPECT_THAT(metrics->body, Not(HasSubstr(kAlice)));
  EXPECT_THAT(metrics->body, Not(HasSubstr(kBob)));
}

}  // namespace
}  // namespace dsv3
