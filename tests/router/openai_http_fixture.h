#ifndef DSV3_TESTS_ROUTER_OPENAI_HTTP_FIXTURE_H_
#define DSV3_TESTS_ROUTER_OPENAI_HTTP_FIXTURE_H_

// The OpenAI HTTP front end on a real httplib::Server on 127.0.0.1 over a scripted backend,
// and the client-side helpers its tests share.

#include <httplib.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/router/scripted_backend.h"

namespace dsv3::router::testing {

using Json = nlohmann::json;

// The fixture's body limit.
constexpr size_t kBodyLimit = 64 * 1024;

constexpr char kChatHello[] =
    R"({"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})";

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
};

class OpenAiHttpTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  Reply Post(const std::string& path, const std::string& body,
             const std::string& content_type = "application/json",
             const httplib::Headers& headers = {});
  Reply Get(const std::string& path);

  // Declared first: outlives the server.
  ScriptedBackend backend_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

Json ParseJson(const std::string& text);
// Checks OpenAI's error shape and returns the error object.
Json ExpectError(const Reply& reply, int status);
// The "data: " payloads of an SSE body, checking the framing on the way.
std::vector<std::string> SseData(const std::string& body);
// A chat (completion) request body with `extra` fields added.
std::string ChatWith(const std::string& extra);
std::string CompletionWith(const std::string& extra);
// Connects, sends `request`, reads until `marker` shows up (or 5 s), returns what it read.
// The socket is closed on return: the client disconnects mid-stream.
std::string SendAndHangUp(int port, const std::string& request, const std::string& marker);
// An HTTP/1.1 POST of a JSON body to `path`, as bytes on the wire.
std::string RawJsonPost(const std::string& path, const std::string& body);
// Connects to 127.0.0.1:port and sends `request`; returns the socket (-1 on failure).
int ConnectAndSend(int port, const std::string& request);

}  // namespace dsv3::router::testing

#endif  // DSV3_TESTS_ROUTER_OPENAI_HTTP_FIXTURE_H_
