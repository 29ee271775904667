#include "tests/router/openai_http_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "router/openai_http.h"

namespace dsv3::router::testing {

using ::testing::HasSubstr;

void OpenAiHttpTest::SetUp() {
  OpenAiHttpOptions options;
  options.max_body_bytes = kBodyLimit;
  options.threads = 16;
  AddOpenAiRoutes(server_, backend_, options);
  port_ = server_.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port_, 0);
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  // Serving once one request got through (the listen backlog is raised by then).
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    httplib::Client client("127.0.0.1", port_);
    if (client.Get("/health")) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

void OpenAiHttpTest::TearDown() {
  server_.stop();
  if (thread_.joinable()) thread_.join();
}

Reply OpenAiHttpTest::Post(const std::string& path, const std::string& body,
                           const std::string& content_type, const httplib::Headers& headers) {
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(10, 0);
  httplib::Result result = client.Post(path.c_str(), headers, body, content_type.c_str());
  if (!result) {
    ADD_FAILURE() << "POST " << path << " failed: " << httplib::to_string(result.error());
    return {};
  }
  return {result->status, result->body, result->get_header_value("Content-Type")};
}

Reply OpenAiHttpTest::Get(const std::string& path) {
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(10, 0);
  httplib::Result result = client.Get(path.c_str());
  if (!result) {
    ADD_FAILURE() << "GET " << path << " failed: " << httplib::to_string(result.error());
    return {};
  }
  return {result->status, result->body, result->get_header_value("Content-Type")};
}

Json ParseJson(const std::string& text) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(json.is_discarded()) << "not JSON: " << text;
  return json;
}

Json ExpectError(const Reply& reply, int status) {
  EXPECT_EQ(reply.status, status) << reply.body;
  EXPECT_THAT(reply.content_type, HasSubstr("application/json"));
  Json body = ParseJson(reply.body);
  if (!body.is_object() || !body.contains("error")) {
    ADD_FAILURE() << "no error object: " << reply.body;
    return Json::object();
  }
  const Json& error = body["error"];
  EXPECT_TRUE(error["message"].is_string());
  EXPECT_FALSE(error["message"].get<std::string>().empty());
  EXPECT_TRUE(error["type"].is_string());
  EXPECT_TRUE(error.contains("param"));
  EXPECT_TRUE(error.contains("code"));
  return error;
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> data;
  EXPECT_TRUE(body.size() >= 2 && body.substr(body.size() - 2) == "\n\n") << body;
  for (absl::string_view event : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(event, "data: ")) << event;
    EXPECT_EQ(event.find('\n'), absl::string_view::npos) << event;
    data.emplace_back(event.substr(6));
  }
  return data;
}

std::string ChatWith(const std::string& extra) {
  return absl::StrCat(R"({"messages": [{"role": "user", "content": "hi"}], )", extra, "}");
}

std::string CompletionWith(const std::string& extra) {
  return absl::StrCat(R"({"prompt": "hi", )", extra, "}");
}

std::string RawJsonPost(const std::string& path, const std::string& body) {
  return absl::StrCat("POST ", path,
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: ",
                      body.size(), "\r\n\r\n", body);
}

int ConnectAndSend(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    ADD_FAILURE() << "connect failed";
    return -1;
  }
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  return fd;
}

std::string SendAndHangUp(int port, const std::string& request, const std::string& marker) {
  const int fd = ConnectAndSend(port, request);
  if (fd < 0) return "";
  std::string received;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (received.find(marker) == std::string::npos && absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    received.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return received;
}

}  // namespace dsv3::router::testing
