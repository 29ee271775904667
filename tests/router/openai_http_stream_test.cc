// Server-Sent Events from the OpenAI HTTP front end: exact framing, n > 1, logprobs, errors
// after the start, and cancellation when the client leaves or the server stops.

#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router/openai_http_fixture.h"

namespace dsv3::router::testing {
namespace {

using ::testing::HasSubstr;

// --- streaming -------------------------------------------------------------------------------

// The exact bytes of a streamed chat completion with include_usage.
TEST_F(OpenAiHttpTest, ChatStreamIsExactServerSentEvents) {
  const Reply reply = Post("/v1/chat/completions",
                           R"({"messages": [{"role": "user", "content": "hi"}], "stream": true,
               "stream_options": {"include_usage": true}})",
                           "application/json", {{"X-Request-Id", "req-1"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.content_type, "text/event-stream");
  const std::vector<std::string> data = SseData(reply.body);
  ASSERT_FALSE(data.empty());
  const int64_t created = ParseJson(data[0])["created"].get<int64_t>();
  const std::string head =
      absl::StrCat(R"({"id":"chatcmpl-req-1","object":"chat.completion.chunk","created":)", created,
                   R"(,"model":"test-model","choices":)");
  auto content = [&](const std::string& delta, const std::string& finish) {
    return absl::StrCat("data: ", head, R"([{"index":0,"delta":)", delta,
                        R"(,"logprobs":null,"finish_reason":)", finish, R"(}],"usage":null})",
                        "\n\n");
  };
  const std::string expected = absl::StrCat(
      content(R"({"role":"assistant","content":""})", "null"),
      content(R"({"content":"Hello"})", "null"), content(R"({"content":" world"})", "null"),
      content(R"({"content":"!"})", "null"), content("{}", R"("stop")"), "data: ", head,
      R"([],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,)",
      R"("prompt_tokens_details":{"cached_tokens":0}}})", "\n\n", "data: [DONE]\n\n");
  EXPECT_EQ(reply.body, expected);
  EXPECT_EQ(backend_.last_request().request_id(), "req-1");
}

TEST_F(OpenAiHttpTest, CompletionStreamWithoutUsage) {
  const Reply reply =
      Post("/v1/completions", R"({"prompt": "x", "stream": true})", "application/json",
           {{"X-Request-Id", "r2"}, {"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  const std::vector<std::string> data = SseData(reply.body);
  ASSERT_EQ(data.size(), 5u) << reply.body;
  const int64_t created = ParseJson(data[0])["created"].get<int64_t>();
  const std::string head = absl::StrCat(R"({"id":"cmpl-r2","object":"text_completion","created":)",
                                        created, R"(,"model":"test-model","choices":)");
  EXPECT_EQ(data[0],
            head + R"([{"index":0,"text":"Hello","logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(data[1],
            head + R"([{"index":0,"text":" world","logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(data[2], head + R"([{"index":0,"text":"!","logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(data[3], head + R"([{"index":0,"text":"","logprobs":null,"finish_reason":"stop"}]})");
  EXPECT_EQ(data[4], "[DONE]");
}

TEST_F(OpenAiHttpTest, StreamTwoChoicesAndLogprobs) {
  Script script;
  script.pieces = {{"c{i}", {11}}, {"+", {12}}};
  backend_.SetScript(script);
  const Reply reply = Post("/v1/chat/completions",
                           R"({"messages": [{"role": "user", "content": "hi"}], "n": 2,
                               "stream": true, "logprobs": true, "top_logprobs": 1,
                               "stream_options": {"include_usage": true}})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  const std::vector<std::string> data = SseData(reply.body);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.back(), "[DONE]");
  std::string text[2];
  int roles[2] = {0, 0};
  int finishes[2] = {0, 0};
  int logprob_entries[2] = {0, 0};
  for (size_t k = 0; k + 2 < data.size(); ++k) {
    const Json chunk = ParseJson(data[k]);
    ASSERT_EQ(chunk["choices"].size(), 1u) << data[k];
    const Json& choice = chunk["choices"][0];
    const int index = choice["index"].get<int>();
    ASSERT_TRUE(index == 0 || index == 1);
    if (choice["delta"].contains("role")) {
      EXPECT_EQ(text[index], "") << "role comes first";
      ++roles[index];
    }
    text[index] += choice["delta"].value("content", "");
    if (!choice["finish_reason"].is_null()) ++finishes[index];
    if (!choice["logprobs"].is_null()) {
      for (const Json& entry : choice["logprobs"]["content"]) {
        EXPECT_EQ(entry["top_logprobs"].size(), 1u);
        ++logprob_entries[index];
      }
    }
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(roles[i], 1);
    EXPECT_EQ(finishes[i], 1);
    EXPECT_EQ(text[i], absl::StrCat("c", i, "+"));
    EXPECT_EQ(logprob_entries[i], 2);
  }
  const Json usage_chunk = ParseJson(data[data.size() - 2]);
  EXPECT_EQ(usage_chunk["choices"], Json::array());
  EXPECT_EQ(usage_chunk["usage"],
            Json::parse(R"({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9,
                            "prompt_tokens_details": {"cached_tokens": 0}})"));
}

// Prompt tokens served from the prefix cache reach OpenAI's usage.prompt_tokens_details,
// streamed and not.
TEST_F(OpenAiHttpTest, UsageCarriesCachedPromptTokens) {
  Script script;
  script.cached_prompt_tokens = 4;
  backend_.SetScript(script);
  Reply reply =
      Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(ParseJson(reply.body)["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  reply = Post("/v1/completions", R"({"prompt": "x", "stream": true,
                                      "stream_options": {"include_usage": true}})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  const std::vector<std::string> data = SseData(reply.body);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(ParseJson(data[data.size() - 2])["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
}

TEST_F(OpenAiHttpTest, StreamErrorAfterStartIsAnErrorEventThenDone) {
  Script script;
  script.final_status = absl::UnavailableError("decode worker died");
  backend_.SetScript(script);
  const Reply reply = Post("/v1/completions", R"({"prompt": "x", "stream": true})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  const std::vector<std::string> data = SseData(reply.body);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.back(), "[DONE]");
  const Json error = ParseJson(data[data.size() - 2]);
  EXPECT_EQ(error["error"]["message"], "decode worker died");
  EXPECT_EQ(error["error"]["type"], "service_unavailable_error");
}

TEST_F(OpenAiHttpTest, ClientDisconnectMidStreamCancelsTheRequest) {
  Script script;
  script.endless = true;
  script.interval = absl::Milliseconds(20);
  backend_.SetScript(script);
  const std::string body = ChatWith(R"("stream": true)");
  const std::string request = RawJsonPost("/v1/chat/completions", body);
  for (int round = 1; round <= 3; ++round) {
    SCOPED_TRACE(round);
    const std::string received = SendAndHangUp(port_, request, R"("content":" world")");
    ASSERT_THAT(received, HasSubstr("HTTP/1.1 200"));
    ASSERT_THAT(received, HasSubstr(R"("content":" world")"));
    const absl::Time left = absl::Now();
    EXPECT_TRUE(backend_.WaitForCancels(round, absl::Seconds(1)))
        << "no Cancel within 1 s of the client leaving";
    EXPECT_LT(absl::Now() - left, absl::Seconds(1));
    // The backend's OnDone(CANCELLED) arrives and nothing keeps the request.
    EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
  }
  // The threads were released: the server still answers.
  backend_.SetScript(Script());
  EXPECT_EQ(Post("/v1/chat/completions", kChatHello).status, 200);
}

// Nothing is being written when the client leaves: the stream's poll notices.
TEST_F(OpenAiHttpTest, ClientDisconnectWhileTheBackendIsSilentCancelsTheRequest) {
  Script script;
  script.hold_after_first = true;
  backend_.SetScript(script);
  const std::string body = R"({"prompt": "x", "stream": true})";
  const std::string request = RawJsonPost("/v1/completions", body);
  const std::string received = SendAndHangUp(port_, request, R"("text":"Hello")");
  ASSERT_THAT(received, HasSubstr(R"("text":"Hello")"));
  ASSERT_TRUE(backend_.WaitForHeld(1, absl::Seconds(5)));
  EXPECT_TRUE(backend_.WaitForCancels(1, absl::Seconds(1)))
      << "no Cancel within 1 s of the client leaving";
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
}

// A non-streaming request holds its handler until the whole answer is ready: a client that
// closes the connection meanwhile cancels it (the router asks the kernel for the
// connection's state; httplib gives handlers no socket).
TEST_F(OpenAiHttpTest, ClientDisconnectDuringANonStreamingRequestCancelsIt) {
  Script script;
  script.hold_after_first = true;
  backend_.SetScript(script);
  const std::string body = R"({"prompt": "x", "max_tokens": 8})";
  const std::string request = RawJsonPost("/v1/completions", body);
  const int fd = ConnectAndSend(port_, request);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(backend_.WaitForHeld(1, absl::Seconds(2)));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(backend_.cancels(), 0) << "cancelled while the client was still there";
  close(fd);  // the client gives up
  const bool cancelled = backend_.WaitForCancels(1, absl::Seconds(2));
  EXPECT_TRUE(cancelled) << "no Cancel within 2 s of the client leaving";
  if (!cancelled) backend_.ReleaseHeld();  // let the handler end
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
}

// httplib ends a stream quietly when the server stops; the request must not run on.
TEST_F(OpenAiHttpTest, ServerStopMidStreamCancelsTheRequest) {
  Script script;
  script.endless = true;
  script.interval = absl::Milliseconds(20);
  backend_.SetScript(script);
  std::thread client([this] {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(5, 0);
    c.Post("/v1/chat/completions", ChatWith(R"("stream": true)"), "application/json");
  });
  EXPECT_TRUE(backend_.WaitForRunning(1, absl::Seconds(2)));
  absl::SleepFor(absl::Milliseconds(100));  // a few chunks are out
  server_.stop();
  thread_.join();
  EXPECT_TRUE(backend_.WaitForCancels(1, absl::Seconds(1)));
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
  client.join();
}

TEST_F(OpenAiHttpTest, ManyConcurrentStreamsComplete) {
  Script script;
  script.interval = absl::Milliseconds(10);
  backend_.SetScript(script);
  // More than the fixture's 16 threads and far more than httplib's listen backlog of 5.
  constexpr int kStreams = 40;
  const absl::Time start = absl::Now();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", port_);
      client.set_read_timeout(10, 0);
      auto result =
          client.Post("/v1/chat/completions", ChatWith(R"("stream": true)"), "application/json");
      if (result && result->status == 200 && absl::EndsWith(result->body, "data: [DONE]\n\n") &&
          result->body.find(R"("content":" world")") != std::string::npos) {
        ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), kStreams);
  // A dropped connection would wait for the client's SYN retry (1 s).
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(900));
  EXPECT_EQ(backend_.cancels(), 0);
}

}  // namespace
}  // namespace dsv3::router::testing
