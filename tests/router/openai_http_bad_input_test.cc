// Issue 5's bad-input bullet at the OpenAI HTTP front end: each bad request gets a 4xx in
// OpenAI's error JSON naming the problem, never reaches the backend, and the server keeps
// serving.

#include <httplib.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router/openai_http_fixture.h"

namespace dsv3::router::testing {
namespace {

using ::testing::HasSubstr;

// --- bad input -----------------------------------------------------------------------------

struct BadInput {
  const char* name;
  const char* path;
  std::string body;
  int status;
  // Expected "param" ("" = do not check) and a piece of the message.
  const char* param;
  const char* message;
};

TEST_F(OpenAiHttpTest, BadInputGetsA4xxNamingTheProblemAndTheServerKeepsServing) {
  constexpr char kChat[] = "/v1/chat/completions";
  constexpr char kCompletions[] = "/v1/completions";
  std::vector<std::string> seventeen_stops;
  for (int i = 0; i < 17; ++i) seventeen_stops.push_back(absl::StrCat("\"s", i, "\""));
  const std::vector<BadInput> cases = {
      {"malformed json", kChat, R"({"messages": [)", 400, "", "not valid JSON"},
      {"trailing garbage", kChat, R"({"messages": []} x)", 400, "", "not valid JSON"},
      {"empty body", kChat, "", 400, "", "not valid JSON"},
      {"body not an object", kChat, "[1, 2]", 400, "", "must be a JSON object"},
      {"deeply nested", kChat, std::string(30000, '[') + std::string(30000, ']'), 400, "",
       "must be a JSON object"},
      {"number overflow", kChat, ChatWith(R"("temperature": 1e99999)"), 400, "", ""},
      {"invalid utf-8", kChat, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\xff\"}]}",
       400, "", "UTF-8"},
      {"truncated utf-8", kCompletions, "{\"prompt\": \"\xe4\xbd\"}", 400, "", "UTF-8"},
      {"lone surrogate", kCompletions, R"({"prompt": "\ud800"})", 400, "", "surrogate"},
      {"max_tokens string", kChat, ChatWith(R"("max_tokens": "10")"), 400, "max_tokens",
       "must be an integer, got string"},
      {"max_tokens float", kChat, ChatWith(R"("max_tokens": 3.5)"), 400, "max_tokens",
       "must be an integer"},
      {"max_tokens negative", kChat, ChatWith(R"("max_tokens": -5)"), 400, "max_tokens",
       "between 1 and 2147483647"},
      {"max_tokens zero", kCompletions, CompletionWith(R"("max_tokens": 0)"), 400, "max_tokens",
       "between 1 and"},
      {"max_tokens huge", kChat, ChatWith(R"("max_tokens": 10000000000000)"), 400, "max_tokens",
       "between 1 and"},
      {"max_tokens beyond u64", kChat, ChatWith(R"("max_tokens": 99999999999999999999999)"), 400,
       "max_tokens", "must be an integer"},
      {"max_completion_tokens negative", kChat, ChatWith(R"("max_completion_tokens": -1)"), 400,
       "max_completion_tokens", "between 1 and"},
      {"temperature too high", kChat, ChatWith(R"("temperature": 2.5)"), 400, "temperature",
       "[0, 2]"},
      {"temperature negative", kChat, ChatWith(R"("temperature": -0.1)"), 400, "temperature", ""},
      {"temperature string", kChat, ChatWith(R"("temperature": "hot")"), 400, "temperature",
       "must be a number"},
      {"top_p zero", kChat, ChatWith(R"("top_p": 0)"), 400, "top_p", "(0, 1]"},
      {"top_p above one", kChat, ChatWith(R"("top_p": 1.5)"), 400, "top_p", ""},
      {"top_k negative", kChat, ChatWith(R"("top_k": -2)"), 400, "top_k", ""},
      {"top_k float", kChat, ChatWith(R"("top_k": 1.5)"), 400, "top_k", "integer"},
      {"min_p", kChat, ChatWith(R"("min_p": 2)"), 400, "min_p", ""},
      {"presence_penalty", kChat, ChatWith(R"("presence_penalty": 3)"), 400, "presence_penalty",
       ""},
      {"frequency_penalty", kChat, ChatWith(R"("frequency_penalty": -2.5)"), 400,
       "frequency_penalty", ""},
      {"repetition_penalty", kChat, ChatWith(R"("repetition_penalty": 0)"), 400,
       "repetition_penalty", ""},
      {"n too big", kChat, ChatWith(R"("n": 5)"), 400, "n", "between 1 and 4"},
      {"n zero", kChat, ChatWith(R"("n": 0)"), 400, "n", ""},
      {"n string", kChat, ChatWith(R"("n": "2")"), 400, "n", "integer"},
      {"stop number", kChat, ChatWith(R"("stop": 5)"), 400, "stop", ""},
      {"stop array of numbers", kChat, ChatWith(R"("stop": [1])"), 400, "stop[0]", ""},
      {"stop empty string", kChat, ChatWith(R"("stop": "")"), 400, "stop", "empty"},
      {"too many stops", kChat,
       ChatWith(absl::StrCat(R"("stop": [)", absl::StrJoin(seventeen_stops, ","), "]")), 400,
       "stop", "at most 16"},
      {"seed string", kChat, ChatWith(R"("seed": "x")"), 400, "seed", ""},
      {"seed float", kChat, ChatWith(R"("seed": 1.5)"), 400, "seed", ""},
      {"chat logprobs int", kChat, ChatWith(R"("logprobs": 3)"), 400, "logprobs", "boolean"},
      {"top_logprobs too many", kChat, ChatWith(R"("logprobs": true, "top_logprobs": 21)"), 400,
       "top_logprobs", ""},
      {"top_logprobs alone", kChat, ChatWith(R"("top_logprobs": 2)"), 400, "top_logprobs",
       "logprobs"},
      {"completion logprobs bool", kCompletions, CompletionWith(R"("logprobs": true)"), 400,
       "logprobs", "integer"},
      {"stream string", kChat, ChatWith(R"("stream": "yes")"), 400, "stream", "boolean"},
      {"stream_options without stream", kChat,
       ChatWith(R"("stream_options": {"include_usage": true})"), 400, "stream_options", ""},
      {"include_usage string", kChat,
       ChatWith(R"("stream": true, "stream_options": {"include_usage": "yes"})"), 400,
       "stream_options.include_usage", ""},
      {"ignore_eos string", kChat, ChatWith(R"("ignore_eos": "true")"), 400, "ignore_eos", ""},
      {"model number", kChat, ChatWith(R"("model": 5)"), 400, "model", "string"},
      {"messages missing", kChat, R"({"model": "test-model"})", 400, "messages", "required"},
      {"messages string", kChat, R"({"messages": "hi"})", 400, "messages", "array"},
      {"messages empty", kChat, R"({"messages": []})", 400, "messages", "empty"},
      {"message not object", kChat, R"({"messages": ["hi"]})", 400, "messages[0]", ""},
      {"role unknown", kChat, R"({"messages": [{"role": "wizard", "content": "x"}]})", 400,
       "messages[0].role", "wizard"},
      {"role number", kChat, R"({"messages": [{"role": 1, "content": "x"}]})", 400,
       "messages[0].role", ""},
      {"content number", kChat, R"({"messages": [{"role": "user", "content": 5}]})", 400,
       "messages[0].content", ""},
      {"content missing", kChat, R"({"messages": [{"role": "user"}]})", 400, "messages[0].content",
       "required"},
      {"image part", kChat,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})",
       400, "messages[0].content[0].type", "image_url"},
      {"tool_calls not array", kChat, R"({"messages": [{"role": "assistant", "tool_calls": {}}]})",
       400, "messages[0].tool_calls", ""},
      {"tools not array", kChat, ChatWith(R"("tools": {})"), 400, "tools", ""},
      {"prompt missing", kCompletions, R"({"max_tokens": 3})", 400, "prompt", "required"},
      {"prompt number", kCompletions, R"({"prompt": 5})", 400, "prompt", ""},
      {"prompt negative id", kCompletions, R"({"prompt": [1, -1]})", 400, "prompt[1]", ""},
      {"prompt id too big", kCompletions, R"({"prompt": [4294967296]})", 400, "prompt[0]", ""},
      {"prompt mixed", kCompletions, R"({"prompt": [1, "a"]})", 400, "prompt[1]", ""},
      {"prompt batch of strings", kCompletions, R"({"prompt": ["a", "b"]})", 400, "prompt",
       "batched"},
      {"prompt batch of ids", kCompletions, R"({"prompt": [[1], [2]]})", 400, "prompt", "batched"},
      {"prompt empty array", kCompletions, R"({"prompt": []})", 400, "prompt", "empty"},
      {"echo of ids", kCompletions, R"({"prompt": [1, 2], "echo": true})", 400, "echo",
       "text prompt"},
      {"echo with logprobs", kCompletions, CompletionWith(R"("echo": true, "logprobs": 2)"), 400,
       "echo", "not supported"},
      {"logit_bias not an id", kChat, ChatWith(R"("logit_bias": {"x": 1})"), 400, "logit_bias",
       "not a token id"},
      {"logit_bias too strong", kChat, ChatWith(R"("logit_bias": {"5": 101})"), 400,
       "logit_bias[5]", ""},
      {"legacy functions", kChat, ChatWith(R"("functions": [{"name": "f"}])"), 400, "functions",
       "tools"},
      {"audio", kChat, ChatWith(R"("modalities": ["text", "audio"])"), 400, "modalities", ""},
      {"best_of", kCompletions, CompletionWith(R"("best_of": 3)"), 400, "best_of", "'n'"},
      {"suffix", kCompletions, CompletionWith(R"("suffix": "end")"), 400, "suffix", ""},
      {"response_format type", kChat, ChatWith(R"("response_format": {"type": "yaml"})"), 400,
       "response_format.type", "yaml"},
      {"tool_choice mode", kChat, ChatWith(R"("tool_choice": "always")"), 400, "tool_choice",
       "always"},
  };
  const int calls_before = backend_.generate_calls();
  for (const BadInput& c : cases) {
    SCOPED_TRACE(c.name);
    const Reply reply = Post(c.path, c.body);
    const Json error = ExpectError(reply, c.status);
    EXPECT_EQ(error.value("type", ""), "invalid_request_error");
    if (c.param[0] != '\0') {
      EXPECT_EQ(error["param"], c.param) << reply.body;
    }
    EXPECT_THAT(error.value("message", ""), HasSubstr(c.message));
  }
  // Validation failures never reach the backend.
  EXPECT_EQ(backend_.generate_calls(), calls_before);

  // Still serving.
  const Reply reply = Post("/v1/chat/completions", kChatHello);
  ASSERT_EQ(reply.status, 200) << reply.body;
}

}  // namespace
}  // namespace dsv3::router::testing
