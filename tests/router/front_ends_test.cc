// AddFrontEnds inside the real ServiceHost: both front ends and /metrics on one process.

#include "router/front_ends.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "common/service_host.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/router/scripted_backend.h"

namespace dsv3::router {
namespace {

TEST(FrontEndsTest, ServesGrpcOpenAiAndMetricsFromOneHost) {
  testing::ScriptedBackend backend;
  ServerParts parts;
  bool earlier_routes_kept = false;
  parts.add_http_routes = [&earlier_routes_kept](httplib::Server& server) {
    earlier_routes_kept = true;
    server.Get("/earlier", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("yes", "text/plain");
    });
  };
  ASSERT_TRUE(AddFrontEnds(backend, parts).ok());
  ASSERT_EQ(parts.services.size(), 1u);

  ServiceHostOptions options;
  options.role = "router";
  options.add_http_routes = parts.add_http_routes;
  std::vector<grpc::Service*> services;
  for (auto& service : parts.services) services.push_back(service.get());
  absl::StatusOr<std::unique_ptr<ServiceHost>> host = ServiceHost::Start(options, services);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_TRUE(earlier_routes_kept);

  httplib::Client http("127.0.0.1", (*host)->http_port());
  http.set_read_timeout(10, 0);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  auto earlier = http.Get("/earlier");
  ASSERT_TRUE(earlier);
  EXPECT_EQ(earlier->body, "yes");
  auto health = http.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto chat = http.Post("/v1/chat/completions",
                        R"({"messages": [{"role": "user", "content": "hi"}]})", "application/json");
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 200) << chat->body;

  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel((*host)->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub->ListModels(&context, v1::ListModelsRequest(), &models).ok());
  EXPECT_EQ(models.models_size(), 1);

  (*host)->Shutdown();
}

}  // namespace
}  // namespace dsv3::router
