// The OpenAI-compatible HTTP front end: requests and responses translated both ways, and
// errors mapped to HTTP statuses (real sockets, scripted backend).

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/openai_request.h"
#include "tests/router/openai_http_fixture.h"

namespace dsv3::router::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// --- happy paths -------------------------------------------------------------------------

TEST_F(OpenAiHttpTest, ChatCompletionTranslatesRequestAndResponse) {
  const Reply reply = Post("/v1/chat/completions", R"({
    "model": "test-model",
    "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
      {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
               "parameters": {"type": "object"}}}],
    "max_tokens": 7, "max_completion_tokens": 9, "temperature": 0.5, "top_p": 0.9,
    "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "repetition_penalty": 1.1, "seed": 1234, "stop": ["\n\n", "END"], "ignore_eos": true,
    "skip_special_tokens": false
  })");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_THAT(reply.content_type, HasSubstr("application/json"));
  const Json body = ParseJson(reply.body);
  EXPECT_TRUE(absl::StartsWith(body["id"].get<std::string>(), "chatcmpl-")) << reply.body;
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_TRUE(body["created"].is_number_integer());
  EXPECT_EQ(body["model"], "test-model");
  ASSERT_EQ(body["choices"].size(), 1u);
  const Json& choice = body["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], "Hello world!");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(body["usage"],
            Json::parse(R"({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                            "prompt_tokens_details": {"cached_tokens": 0}})"));

  const v1::GenerateRequest request = backend_.last_request();
  EXPECT_FALSE(request.request_id().empty());
  EXPECT_EQ(request.model(), "test-model");
  ASSERT_TRUE(request.has_chat());
  ASSERT_EQ(request.chat().messages_size(), 4);
  EXPECT_EQ(request.chat().messages(0).role(), "system");
  EXPECT_EQ(request.chat().messages(0).content(), "be brief");
  EXPECT_EQ(request.chat().messages(1).content(), "a\nb");
  EXPECT_EQ(request.chat().messages(2).role(), "assistant");
  ASSERT_EQ(request.chat().messages(2).tool_calls_size(), 1);
  EXPECT_EQ(request.chat().messages(2).tool_calls(0).id(), "call_1");
  EXPECT_EQ(request.chat().messages(2).tool_calls(0).function_name(), "get_weather");
  EXPECT_EQ(request.chat().messages(2).tool_calls(0).function_arguments(), R"({"city":"Paris"})");
  EXPECT_EQ(request.chat().messages(3).tool_call_id(), "call_1");
  ASSERT_EQ(request.chat().tools_size(), 1);
  EXPECT_EQ(request.chat().tools(0).name(), "get_weather");
  EXPECT_EQ(request.chat().tools(0).parameters_json(), R"({"type":"object"})");
  const v1::SamplingParams& s = request.sampling();
  EXPECT_EQ(s.max_tokens(), 9);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(s.temperature(), 0.5f);
  EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
  EXPECT_EQ(s.top_k(), 40);
  EXPECT_FLOAT_EQ(s.min_p(), 0.05f);
  EXPECT_FLOAT_EQ(s.presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(s.frequency_penalty(), -0.5f);
  EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.1f);
  ASSERT_TRUE(s.has_seed());
  EXPECT_EQ(s.seed(), 1234u);
  EXPECT_THAT(s.stop(), ::testing::ElementsAre("\n\n", "END"));
  EXPECT_TRUE(s.ignore_eos());
  ASSERT_TRUE(s.has_skip_special_tokens());
  EXPECT_FALSE(s.skip_special_tokens());
  EXPECT_EQ(s.logprobs(), 0);
  EXPECT_EQ(request.n(), 1);
}

TEST_F(OpenAiHttpTest, CompletionPromptForms) {
  Reply reply =
      Post("/v1/completions", R"({"prompt": "Once", "max_tokens": 4, "stop": "x", "finish": 1})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  Json body = ParseJson(reply.body);
  EXPECT_TRUE(absl::StartsWith(body["id"].get<std::string>(), "cmpl-"));
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["model"], "test-model");  // the default model's name
  EXPECT_EQ(body["choices"][0]["text"], "Hello world!");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["total_tokens"], 8);
  EXPECT_EQ(backend_.last_request().text(), "Once");
  EXPECT_THAT(backend_.last_request().sampling().stop(), ::testing::ElementsAre("x"));

  reply = Post("/v1/completions", R"({"prompt": [0, 17, 5]})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_THAT(backend_.last_request().token_ids().ids(), ::testing::ElementsAre(0, 17, 5));

  reply = Post("/v1/completions", R"({"prompt": ["just one"]})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(backend_.last_request().text(), "just one");

  reply = Post("/v1/completions", R"({"prompt": [[3, 4]], "return_token_ids": true})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_THAT(backend_.last_request().token_ids().ids(), ::testing::ElementsAre(3, 4));
  EXPECT_EQ(ParseJson(reply.body)["choices"][0]["token_ids"], Json::parse("[11, 12, 13]"));
}

TEST_F(OpenAiHttpTest, LengthFinishReason) {
  Script script;
  script.finish_reason = v1::FINISH_REASON_LENGTH;
  backend_.SetScript(script);
  const Reply reply = Post("/v1/chat/completions", kChatHello);
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(ParseJson(reply.body)["choices"][0]["finish_reason"], "length");
}

TEST_F(OpenAiHttpTest, TwoChoicesEachWithItsIndex) {
  Script script;
  script.pieces = {{"c{i}-a", {1}}, {" c{i}-b", {2}}};
  backend_.SetScript(script);
  const Reply reply =
      Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "n": 2})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(backend_.last_request().n(), 2);
  const Json body = ParseJson(reply.body);
  ASSERT_EQ(body["choices"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["message"]["content"], absl::StrCat("c", i, "-a c", i, "-b"));
    EXPECT_EQ(body["choices"][i]["finish_reason"], "stop");
  }
  // Completion tokens of both choices, the prompt once.
  EXPECT_EQ(body["usage"],
            Json::parse(R"({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9,
                            "prompt_tokens_details": {"cached_tokens": 0}})"));
}

TEST_F(OpenAiHttpTest, ChatLogprobs) {
  Script script;
  script.pieces = {{"a", {11}}, {"b", {99}}};
  backend_.SetScript(script);
  Reply reply = Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}],
                                                 "logprobs": true, "top_logprobs": 2})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(backend_.last_request().sampling().logprobs(), 2);
  Json logprobs = ParseJson(reply.body)["choices"][0]["logprobs"];
  ASSERT_TRUE(logprobs.contains("content")) << reply.body;
  ASSERT_EQ(logprobs["content"].size(), 2u);
  const Json& first = logprobs["content"][0];
  EXPECT_EQ(first["token"], "<11>");
  EXPECT_FLOAT_EQ(first["logprob"].get<float>(), -1.0f);
  EXPECT_EQ(first["bytes"], Json::parse("[60, 49, 49, 62]"));
  ASSERT_EQ(first["top_logprobs"].size(), 2u);
  EXPECT_EQ(first["top_logprobs"][0]["token"], "<111>");
  EXPECT_FLOAT_EQ(first["top_logprobs"][0]["logprob"].get<float>(), -1.0f);
  EXPECT_EQ(first["top_logprobs"][1]["token"], "<112>");
  EXPECT_FLOAT_EQ(first["top_logprobs"][1]["logprob"].get<float>(), -2.0f);
  EXPECT_EQ(first["top_logprobs"][1]["bytes"], Json::parse("[60, 49, 49, 50, 62]"));
  // Half a UTF-8 character: the bytes are exact, the string is still valid JSON.
  EXPECT_EQ(logprobs["content"][1]["bytes"], Json::parse("[228, 189]"));

  // logprobs without alternatives: the backend is asked for one, none are shown.
  reply = Post("/v1/chat/completions",
               R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(backend_.last_request().sampling().logprobs(), 1);
  logprobs = ParseJson(reply.body)["choices"][0]["logprobs"];
  ASSERT_EQ(logprobs["content"].size(), 2u);
  EXPECT_EQ(logprobs["content"][0]["top_logprobs"], Json::array());
}

TEST_F(OpenAiHttpTest, CompletionLogprobs) {
  Script script;
  script.pieces = {{"<11>", {11}}, {"<12>", {12}}};
  backend_.SetScript(script);
  const Reply reply = Post("/v1/completions", R"({"prompt": "x", "logprobs": 1})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  const Json logprobs = ParseJson(reply.body)["choices"][0]["logprobs"];
  EXPECT_EQ(logprobs["tokens"], Json::parse(R"(["<11>", "<12>"])"));
  ASSERT_EQ(logprobs["token_logprobs"].size(), 2u);
  EXPECT_FLOAT_EQ(logprobs["token_logprobs"][1].get<float>(), -0.25f);
  EXPECT_EQ(logprobs["top_logprobs"], Json::parse(R"([{"<111>": -1.0}, {"<112>": -1.0}])"));
  EXPECT_EQ(logprobs["text_offset"], Json::parse("[0, 4]"));
}

TEST_F(OpenAiHttpTest, UnknownFieldsAreIgnoredWithAWarning) {
  ::testing::internal::CaptureStderr();
  const Reply reply = Post("/v1/chat/completions", R"({
    "messages": [{"role": "user", "content": "hi"}],
    "user": "u-1", "frobnicate": {"deep": [1, 2]}, "logit_bias": {"5": 1},
    "parallel_tool_calls": true
  })");
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(ParseJson(reply.body)["choices"][0]["message"]["content"], "Hello world!");
  EXPECT_THAT(log, HasSubstr("ignoring unknown fields"));
  EXPECT_THAT(log, HasSubstr("frobnicate"));
  // Known fields are used (or informational, as `user`), not reported.
  EXPECT_THAT(log, Not(HasSubstr("logit_bias")));
  EXPECT_THAT(log, Not(HasSubstr("user")));
  EXPECT_FLOAT_EQ(backend_.last_request().sampling().logit_bias().at(5), 1.0f);
}

TEST_F(OpenAiHttpTest, WhatARequestLeavesOutTakesOpenAisDefaults) {
  // OpenAI samples at temperature 1 unless told otherwise (the gRPC API's 0 stays greedy).
  Reply reply = Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}]})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_FLOAT_EQ(backend_.last_request().sampling().temperature(), 1.0f);
  reply = Post("/v1/completions", R"({"prompt": "x", "temperature": 0, "echo": true})");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_FLOAT_EQ(backend_.last_request().sampling().temperature(), 0.0f);
  // echo: the prompt's text, then the completion's.
  EXPECT_EQ(ParseJson(reply.body)["choices"][0]["text"], "xHello world!") << reply.body;
  // The checkpoint's defaults come first: ApplySamplingDefaults is what the server calls.
  OpenAiRequest request = *ParseOpenAiRequest(OpenAiEndpoint::kCompletions, R"({"prompt": "x"})");
  v1::ModelInfo info;
  info.set_default_temperature(0.6f);
  info.set_default_top_p(0.95f);
  ApplySamplingDefaults(info, &request);
  EXPECT_FLOAT_EQ(request.generate.sampling().temperature(), 0.6f);
  EXPECT_FLOAT_EQ(request.generate.sampling().top_p(), 0.95f);
}

TEST_F(OpenAiHttpTest, ModelsAndHealth) {
  Reply reply = Get("/v1/models");
  ASSERT_EQ(reply.status, 200);
  Json body = ParseJson(reply.body);
  EXPECT_EQ(body["object"], "list");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["id"], "test-model");
  EXPECT_EQ(body["data"][0]["object"], "model");
  EXPECT_EQ(body["data"][0]["created"], 1700000000);
  EXPECT_EQ(body["data"][0]["max_model_len"], 4096);

  reply = Get("/v1/models/test-model");
  ASSERT_EQ(reply.status, 200);
  EXPECT_EQ(ParseJson(reply.body)["id"], "test-model");
  EXPECT_EQ(ExpectError(Get("/v1/models/nope"), 404)["code"], "model_not_found");

  EXPECT_EQ(Get("/health").status, 200);
  backend_.SetReady(false);
  ExpectError(Get("/health"), 503);
  backend_.SetReady(true);
  EXPECT_EQ(Get("/health").status, 200);
}

// --- errors -------------------------------------------------------------------------------

TEST_F(OpenAiHttpTest, WrongContentTypeIs415) {
  for (const char* type :
       {"text/plain", "application/x-www-form-urlencoded", "application/jsonx"}) {
    SCOPED_TRACE(type);
    const Json error = ExpectError(Post("/v1/chat/completions", kChatHello, type), 415);
    EXPECT_THAT(error.value("message", ""), HasSubstr("application/json"));
  }
  // Parameters and case do not matter.
  EXPECT_EQ(Post("/v1/chat/completions", kChatHello, "Application/JSON; charset=utf-8").status,
            200);
  EXPECT_EQ(backend_.generate_calls(), 1);
}

TEST_F(OpenAiHttpTest, UnknownRouteAndModelAre404) {
  Json error = ExpectError(Post("/v1/nope", "{}"), 404);
  EXPECT_THAT(error.value("message", ""), HasSubstr("/v1/nope"));
  ExpectError(Get("/v1/chat/completions"), 404);
  error = ExpectError(Post("/v1/chat/completions",
                           R"({"model": "nope", "messages": [{"role": "user", "content": "x"}]})"),
                      404);
  EXPECT_EQ(error["code"], "model_not_found");
  EXPECT_EQ(error["param"], "model");
  EXPECT_THAT(error.value("message", ""), HasSubstr("nope"));
}

TEST_F(OpenAiHttpTest, BodyOverTheLimitIs413) {
  const std::string big = ChatWith(absl::StrCat(R"("pad": ")", std::string(kBodyLimit, 'a'), "\""));
  Json error = ExpectError(Post("/v1/chat/completions", big), 413);
  EXPECT_THAT(error.value("message", ""), HasSubstr("limit"));

  // A chunked body has no Content-Length for httplib to check: the handler checks it.
  httplib::Client client("127.0.0.1", port_);
  httplib::Result result = client.Post(
      "/v1/chat/completions",
      [&big](size_t offset, httplib::DataSink& sink) {
        if (offset < big.size()) {
          sink.write(big.data() + offset, std::min<size_t>(4096, big.size() - offset));
        } else {
          sink.done();
        }
        return true;
      },
      "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  ExpectError({result->status, result->body, result->get_header_value("Content-Type")}, 413);
  EXPECT_EQ(backend_.generate_calls(), 0);

  // A huge chunked body is refused once it passes the limit, not read whole first: the
  // server stops reading and closes, and the client's writes fail long before 64 MiB.
  const int fd = ConnectAndSend(port_,
                                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                "Content-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n");
  ASSERT_GE(fd, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  const std::string chunk = "10000\r\n" + std::string(0x10000, 'a') + "\r\n";
  size_t sent = 0;
  while (sent < (size_t{64} << 20)) {
    const ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  close(fd);
  EXPECT_LT(sent, size_t{32} << 20) << "the server read a chunked body far past its limit";
}

TEST_F(OpenAiHttpTest, BackendErrorsMapToHttpStatuses) {
  const std::vector<std::pair<absl::Status, int>> cases = {
      {absl::InvalidArgumentError("prompt is longer than the context (5000 > 4096)"), 400},
      {absl::NotFoundError("unknown model"), 404},
      {absl::ResourceExhaustedError("queue full"), 429},
      {absl::UnavailableError("no healthy decode worker"), 503},
      {absl::DeadlineExceededError("deadline"), 504},
      {absl::InternalError("boom"), 500},
      {absl::UnimplementedError("nope"), 500},
  };
  for (const auto& [status, http_status] : cases) {
    SCOPED_TRACE(status.ToString());
    backend_.SetGenerateError(status);
    Json error = ExpectError(Post("/v1/chat/completions", kChatHello), http_status);
    EXPECT_EQ(error["message"], std::string(status.message()));
    // Streaming requests that fail at the start get the same status, not an event stream.
    error = ExpectError(Post("/v1/completions", R"({"prompt": "x", "stream": true})"), http_status);
    EXPECT_EQ(error["message"], std::string(status.message()));
  }
  backend_.SetGenerateError(absl::OkStatus());

  // An error after the request started (a worker died): non-streaming gets its status.
  Script script;
  script.final_status = absl::UnavailableError("decode worker died");
  backend_.SetScript(script);
  const Json error = ExpectError(Post("/v1/chat/completions", kChatHello), 503);
  EXPECT_EQ(error["message"], "decode worker died");
  EXPECT_EQ(error["type"], "service_unavailable_error");
}

}  // namespace
}  // namespace dsv3::router::testing
