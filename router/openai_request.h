#ifndef DSV3_ROUTER_OPENAI_REQUEST_H_
#define DSV3_ROUTER_OPENAI_REQUEST_H_

// OpenAI request JSON -> dsv3.v1.GenerateRequest: types and ranges checked field by field
// (INVALID_ARGUMENT naming the field, see openai_error.h); fields the API does not know are
// listed, not rejected (OpenAI clients send extras).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dsv3/v1/inference.pb.h"

namespace dsv3::router {

enum class OpenAiEndpoint { kChatCompletions, kCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChatCompletions;
  // model, prompt (chat or text or token ids), sampling, n. request_id is left empty.
  v1::GenerateRequest generate;
  bool stream = false;
  // stream_options.include_usage: a last chunk with the usage and no choices.
  bool include_usage = false;
  // Whether to return log-probabilities, and how many alternatives per token (chat:
  // `logprobs` + `top_logprobs`; completions: `logprobs` = the number of alternatives).
  // sampling.logprobs is max(1, top_logprobs) when logprobs are on, since 0 there means
  // "none"; the formatter trims the alternatives back to top_logprobs.
  bool logprobs = false;
  int top_logprobs = 0;
  // Extension (as vLLM's): each choice also carries the generated token ids.
  bool return_token_ids = false;
  // Completions: the prompt's text comes back before each choice's text.
  bool echo = false;
  // Which sampling fields the client set (the others take the model's defaults).
  bool has_temperature = false;
  bool has_top_p = false;
  bool has_top_k = false;
  // Top-level fields that were ignored (sorted).
  std::vector<std::string> ignored_fields;
};

// Parses a POST body of /v1/chat/completions or /v1/completions. Errors are
// INVALID_ARGUMENT with the offending field as ErrorParam().
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body);

// What a request leaves out, OpenAI's API fills in: the checkpoint's sampling defaults
// (`info`, from its generation_config.json), else OpenAI's (temperature 1, top_p 1).
void ApplySamplingDefaults(const v1::ModelInfo& info, OpenAiRequest* request);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OPENAI_REQUEST_H_
