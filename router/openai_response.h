#ifndef DSV3_ROUTER_OPENAI_RESPONSE_H_
#define DSV3_ROUTER_OPENAI_RESPONSE_H_

// dsv3.v1.GenerateResponse -> OpenAI response JSON: whole chat.completion /
// text_completion objects, and Server-Sent Events chunks for `stream: true`.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dsv3/v1/inference.pb.h"
#include "router/openai_request.h"

namespace dsv3::router {

// What every response object of one request repeats, and how to show it.
struct ResponseContext {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChatCompletions;
  // "chatcmpl-..." or "cmpl-...".
  std::string id;
  int64_t created_unix_seconds = 0;
  std::string model;
  int n = 1;
  bool logprobs = false;
  int top_logprobs = 0;
  bool include_usage = false;
  bool return_token_ids = false;
  // Completions with `echo`: the prompt's text, before each choice's.
  std::string echo;
  // Text of one token id, for logprobs (InferenceBackend::TokenText).
  std::function<std::string(int32_t)> token_text;
};

// The response context of a parsed request; `id_suffix` follows "chatcmpl-"/"cmpl-".
ResponseContext MakeResponseContext(const OpenAiRequest& request, const std::string& id_suffix,
                                    std::string model,
                                    std::function<std::string(int32_t)> token_text);

// The non-streaming body for every response of a request that finished OK.
std::string FormatCompletion(const ResponseContext& context,
                             const std::vector<v1::GenerateResponse>& responses);

// Server-Sent Events for one streaming request: each call returns zero or more complete
// "data: {...}\n\n" events. Not thread-safe (one stream, one writer).
class StreamFormatter {
 public:
  explicit StreamFormatter(ResponseContext context) : context_(std::move(context)) {}

  // Chat: one chunk per choice whose delta carries the role. Completions: nothing.
  std::string Begin();
  // Content (and logprobs) of one response; a finish chunk when it is the last of its index.
  std::string Add(const v1::GenerateResponse& response);
  // OK: the usage chunk when include_usage; an error: an error event. Then "data: [DONE]".
  std::string End(const absl::Status& status);

 private:
  struct Choice {
    int64_t text_offset = 0;  // completions logprobs: where the next token's text starts
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t cached_tokens = 0;
  };

  ResponseContext context_;
  std::map<int32_t, Choice> choices_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OPENAI_RESPONSE_H_
