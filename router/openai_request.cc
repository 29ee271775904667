#include "router/openai_request.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "router/openai_chat_request.h"
#include "router/openai_error.h"
#include "router/openai_json_fields.h"

namespace dsv3::router {
namespace {

using openai_json::Bound;
using openai_json::Field;
using openai_json::Json;
using openai_json::ReadBool;
using openai_json::ReadInt;
using openai_json::ReadNumber;
using openai_json::ReadString;
using openai_json::WrongType;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int kMaxN = 4;
constexpr int kMaxLogprobs = 20;
constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxLogitBias = 300;  // OpenAI's limit

// --- completions prompt ----------------------------------------------------------------

absl::Status ReadTokenIds(const Json& array, absl::string_view param, v1::TokenIds* out) {
  if (array.empty()) return InvalidParam(param, absl::StrCat("'", param, "' must not be empty"));
  for (size_t i = 0; i < array.size(); ++i) {
    int64_t id = 0;
    OPENAI_RETURN_IF_ERROR(ReadInt(array[i], absl::StrCat(param, "[", i, "]"), 0, kInt32Max, &id));
    out->add_ids(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

// prompt: a string, an array of token ids, or a batch of one of either.
absl::Status ReadCompletionPrompt(const Json& body, v1::GenerateRequest* request) {
  const Json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return InvalidParam("prompt", "'prompt' is required");
  if (prompt->is_string()) {
    request->set_text(prompt->get<std::string>());
    return absl::OkStatus();
  }
  if (!prompt->is_array()) {
    return WrongType("prompt", "a string or an array of token ids", *prompt);
  }
  if (prompt->empty()) return InvalidParam("prompt", "'prompt' must not be empty");
  const Json& first = prompt->front();
  if (first.is_number()) return ReadTokenIds(*prompt, "prompt", request->mutable_token_ids());
  if (first.is_string() || first.is_array()) {
    if (prompt->size() != 1) {
      return InvalidParam("prompt", absl::StrCat("batched prompts are not supported (got ",
                                                 prompt->size(), "); send one prompt per request"));
    }
    if (first.is_string()) {
      request->set_text(first.get<std::string>());
      return absl::OkStatus();
    }
    return ReadTokenIds(first, "prompt[0]", request->mutable_token_ids());
  }
  return WrongType("prompt[0]", "a string, a token id or an array of token ids", first);
}

// --- sampling ----------------------------------------------------------------------------

absl::Status ReadStop(const Json& value, v1::SamplingParams* sampling) {
  if (value.is_string()) {
    if (value.get<std::string>().empty())
      return InvalidParam("stop", "a stop string must not be empty");
    sampling->add_stop(value.get<std::string>());
    return absl::OkStatus();
  }
  if (!value.is_array()) return WrongType("stop", "a string or an array of strings", value);
  if (value.size() > kMaxStopStrings) {
    return InvalidParam("stop", absl::StrCat("at most ", kMaxStopStrings,
                                             " stop strings are allowed, got ", value.size()));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    std::string stop;
    OPENAI_RETURN_IF_ERROR(ReadString(value[i], absl::StrCat("stop[", i, "]"), &stop));
    if (stop.empty()) return InvalidParam("stop", "a stop string must not be empty");
    sampling->add_stop(std::move(stop));
  }
  return absl::OkStatus();
}

// {"TOKEN_ID": BIAS, ...}: ids as strings (JSON keys), biases in [-100, 100].
absl::Status ReadLogitBias(const Json& value, v1::SamplingParams* sampling) {
  if (!value.is_object()) return WrongType("logit_bias", "an object of token id -> bias", value);
  if (value.size() > kMaxLogitBias) {
    return InvalidParam("logit_bias", absl::StrCat("at most ", kMaxLogitBias, " tokens"));
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string param = absl::StrCat("logit_bias[", it.key(), "]");
    int32_t token = 0;
    if (!absl::SimpleAtoi(it.key(), &token) || token < 0) {
      return InvalidParam("logit_bias", absl::StrCat("'", it.key(), "' is not a token id"));
    }
    float bias = 0;
    OPENAI_RETURN_IF_ERROR(ReadNumber(it.value(), param, -100, Bound::kClosed, 100, &bias));
    (*sampling->mutable_logit_bias())[token] = bias;
  }
  return absl::OkStatus();
}

// OpenAI parameters that would change the output and that this server does not implement:
// refused by name, never ignored.
absl::Status RefuseUnsupported(const Json& body, OpenAiEndpoint endpoint) {
  for (const char* key :
       {"functions", "function_call", "audio", "prediction", "web_search_options"}) {
    if (Field(body, key) != nullptr) {
      return InvalidParam(key, absl::StrCat("'", key, "' is not supported",
                                            absl::string_view(key).find("function") == 0
                                                ? " (use 'tools' and 'tool_choice')"
                                                : ""));
    }
  }
  if (const Json* m = Field(body, "modalities"); m != nullptr && *m != Json::array({"text"})) {
    return InvalidParam("modalities", "only the 'text' modality is supported");
  }
  if (endpoint == OpenAiEndpoint::kCompletions) {
    if (const Json* b = Field(body, "best_of");
        b != nullptr && !(b->is_number_integer() && *b == 1)) {
      return InvalidParam("best_of", "'best_of' other than 1 is not supported (use 'n')");
    }
    if (const Json* s = Field(body, "suffix"); s != nullptr && !(s->is_string() && s->empty())) {
      return InvalidParam("suffix", "'suffix' is not supported");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadSampling(const Json& body, OpenAiRequest* out) {
  v1::SamplingParams* sampling = out->generate.mutable_sampling();
  int64_t value = 0;
  // max_completion_tokens is OpenAI's newer name; it wins when both are sent.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (const Json* v = Field(body, key)) {
      OPENAI_RETURN_IF_ERROR(ReadInt(*v, key, 1, kInt32Max, &value));
      sampling->set_max_tokens(static_cast<int32_t>(value));
    }
  }
  float number = 0;
  if (const Json* v = Field(body, "temperature")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "temperature", 0, Bound::kClosed, 2, &number));
    sampling->set_temperature(number);
    out->has_temperature = true;
  }
  if (const Json* v = Field(body, "top_p")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "top_p", 0, Bound::kOpen, 1, &number));
    sampling->set_top_p(number);
    out->has_top_p = true;
  }
  if (const Json* v = Field(body, "logit_bias"))
    OPENAI_RETURN_IF_ERROR(ReadLogitBias(*v, sampling));
  if (const Json* v = Field(body, "top_k")) {
    out->has_top_k = true;
    // -1 means "off" in vLLM's API; 0 means it here.
    OPENAI_RETURN_IF_ERROR(ReadInt(*v, "top_k", -1, kInt32Max, &value));
    sampling->set_top_k(value < 0 ? 0 : static_cast<int32_t>(value));
  }
  if (const Json* v = Field(body, "min_p")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "min_p", 0, Bound::kClosed, 1, &number));
    sampling->set_min_p(number);
  }
  if (const Json* v = Field(body, "repetition_penalty")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "repetition_penalty", 0, Bound::kOpen, 2, &number));
    sampling->set_repetition_penalty(number);
  }
  if (const Json* v = Field(body, "presence_penalty")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "presence_penalty", -2, Bound::kClosed, 2, &number));
    sampling->set_presence_penalty(number);
  }
  if (const Json* v = Field(body, "frequency_penalty")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "frequency_penalty", -2, Bound::kClosed, 2, &number));
    sampling->set_frequency_penalty(number);
  }
  if (const Json* v = Field(body, "seed")) {
    if (!v->is_number_integer()) return WrongType("seed", "an integer", *v);
    // Any 64-bit integer; negative seeds keep their bits.
    sampling->set_seed(v->is_number_unsigned() ? v->get<uint64_t>()
                                               : static_cast<uint64_t>(v->get<int64_t>()));
  }
  if (const Json* v = Field(body, "stop")) OPENAI_RETURN_IF_ERROR(ReadStop(*v, sampling));
  if (const Json* v = Field(body, "stop_token_ids")) {
    if (!v->is_array()) return WrongType("stop_token_ids", "an array of token ids", *v);
    for (size_t i = 0; i < v->size(); ++i) {
      OPENAI_RETURN_IF_ERROR(
          ReadInt((*v)[i], absl::StrCat("stop_token_ids[", i, "]"), 0, kInt32Max, &value));
      sampling->add_stop_token_ids(static_cast<int32_t>(value));
    }
  }
  bool flag = false;
  if (const Json* v = Field(body, "ignore_eos")) {
    OPENAI_RETURN_IF_ERROR(ReadBool(*v, "ignore_eos", &flag));
    sampling->set_ignore_eos(flag);
  }
  if (const Json* v = Field(body, "skip_special_tokens")) {
    OPENAI_RETURN_IF_ERROR(ReadBool(*v, "skip_special_tokens", &flag));
    sampling->set_skip_special_tokens(flag);
  }

  // logprobs: chat says whether (bool) and top_logprobs how many; completions says how
  // many (int). The backend's 0 means "none", so ask for at least one alternative.
  if (out->endpoint == OpenAiEndpoint::kChatCompletions) {
    if (const Json* v = Field(body, "logprobs"))
      OPENAI_RETURN_IF_ERROR(ReadBool(*v, "logprobs", &out->logprobs));
    if (const Json* v = Field(body, "top_logprobs")) {
      OPENAI_RETURN_IF_ERROR(ReadInt(*v, "top_logprobs", 0, kMaxLogprobs, &value));
      if (!out->logprobs) {
        return InvalidParam("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
      }
      out->top_logprobs = static_cast<int>(value);
    }
  } else if (const Json* v = Field(body, "logprobs")) {
    OPENAI_RETURN_IF_ERROR(ReadInt(*v, "logprobs", 0, kMaxLogprobs, &value));
    out->logprobs = true;
    out->top_logprobs = static_cast<int>(value);
  }
  if (out->logprobs) sampling->set_logprobs(std::max(1, out->top_logprobs));
  return absl::OkStatus();
}

const std::set<std::string>& KnownFields(OpenAiEndpoint endpoint) {
  static const std::set<std::string>* const kCommon =
      new std::set<std::string>{"model",
                                "max_tokens",
                                "max_completion_tokens",
                                "temperature",
                                "top_p",
                                "top_k",
                                "min_p",
                                "stop",
                                "stop_token_ids",
                                "seed",
                                "presence_penalty",
                                "frequency_penalty",
                                "repetition_penalty",
                                "logprobs",
                                "n",
                                "ignore_eos",
                                "skip_special_tokens",
                                "stream",
                                "stream_options",
                                "return_token_ids",
                                "response_format",
                                "logit_bias",
                                "user",
                                "metadata",
                                "store",
                                "service_tier",
                                "modalities"};
  static const std::set<std::string>* const kChat = [] {
    auto* fields = new std::set<std::string>(*kCommon);
    fields->insert({"messages", "tools", "top_logprobs", "add_generation_prompt", "tool_choice",
                    "parallel_tool_calls"});
    return fields;
  }();
  static const std::set<std::string>* const kCompletion = [] {
    auto* fields = new std::set<std::string>(*kCommon);
    fields->insert({"prompt", "echo", "best_of", "suffix"});
    return fields;
  }();
  return endpoint == OpenAiEndpoint::kChatCompletions ? *kChat : *kCompletion;
}

absl::Status ReadRequest(const Json& body, OpenAiRequest* out) {
  if (!body.is_object()) return WrongType("body", "a JSON object", body);
  v1::GenerateRequest& request = out->generate;
  if (const Json* model = Field(body, "model")) {
    OPENAI_RETURN_IF_ERROR(ReadString(*model, "model", request.mutable_model()));
  }
  if (out->endpoint == OpenAiEndpoint::kChatCompletions) {
    OPENAI_RETURN_IF_ERROR(ReadChatPrompt(body, &request));
  } else {
    OPENAI_RETURN_IF_ERROR(ReadCompletionPrompt(body, &request));
    if (const Json* echo = Field(body, "echo")) {
      OPENAI_RETURN_IF_ERROR(ReadBool(*echo, "echo", &out->echo));
      if (out->echo && !request.has_text()) {
        return InvalidParam("echo", "'echo' needs a text prompt (not token ids)");
      }
    }
  }
  OPENAI_RETURN_IF_ERROR(ReadSampling(body, out));
  OPENAI_RETURN_IF_ERROR(RefuseUnsupported(body, out->endpoint));
  if (out->echo && out->logprobs) {
    return InvalidParam("echo", "'echo' with 'logprobs' (the prompt's logprobs) is not supported");
  }
  if (const Json* format = Field(body, "response_format")) {
    OPENAI_RETURN_IF_ERROR(ReadResponseFormat(*format, &request));
  }
  int64_t n = 1;
  if (const Json* v = Field(body, "n")) OPENAI_RETURN_IF_ERROR(ReadInt(*v, "n", 1, kMaxN, &n));
  request.set_n(static_cast<int32_t>(n));
  if (const Json* v = Field(body, "stream"))
    OPENAI_RETURN_IF_ERROR(ReadBool(*v, "stream", &out->stream));
  if (const Json* v = Field(body, "stream_options")) {
    if (!v->is_object()) return WrongType("stream_options", "an object", *v);
    if (!out->stream) {
      return InvalidParam("stream_options",
                          "'stream_options' is only allowed when 'stream' is true");
    }
    if (const Json* include = Field(*v, "include_usage")) {
      OPENAI_RETURN_IF_ERROR(
          ReadBool(*include, "stream_options.include_usage", &out->include_usage));
    }
  }
  if (const Json* v = Field(body, "return_token_ids")) {
    OPENAI_RETURN_IF_ERROR(ReadBool(*v, "return_token_ids", &out->return_token_ids));
  }
  const std::set<std::string>& known = KnownFields(out->endpoint);
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (known.count(it.key()) == 0) out->ignored_fields.push_back(it.key());
  }
  return absl::OkStatus();
}

}  // namespace

void ApplySamplingDefaults(const v1::ModelInfo& info, OpenAiRequest* request) {
  v1::SamplingParams* s = request->generate.mutable_sampling();
  if (!request->has_temperature) {
    s->set_temperature(info.has_default_temperature() ? info.default_temperature() : 1.0f);
  }
  if (!request->has_top_p && info.has_default_top_p()) s->set_top_p(info.default_top_p());
  if (!request->has_top_k && info.has_default_top_k()) s->set_top_k(info.default_top_k());
}

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body) {
  Json json;
  try {
    json = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    // e.g. "... invalid string: ill-formed UTF-8 byte; last read: ..." (the quoted bytes
    // are replaced when the error is written out).
    return InvalidParam("body", absl::StrCat("the request body is not valid JSON (at byte ", e.byte,
                                             "): ", e.what()));
  } catch (const Json::exception& e) {  // e.g. a number too large for a double
    return InvalidParam("body", absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  OpenAiRequest request;
  request.endpoint = endpoint;
  DSV3_RETURN_IF_ERROR(ReadRequest(json, &request));
  return request;
}

}  // namespace dsv3::router
