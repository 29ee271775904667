#include "router/openai_response.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "router/openai_error.h"

namespace dsv3::router {
namespace {

// Insertion-ordered, so objects read as OpenAI's do (id, object, created, model, ...).
using Json = nlohmann::ordered_json;

std::string Dump(const Json& json) {
  // Token texts of byte-level BPE may be partial UTF-8: replace rather than throw.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string SseEvent(const Json& json) { return absl::StrCat("data: ", Dump(json), "\n\n"); }

Json FinishReasonJson(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
    case v1::FINISH_REASON_CONTEXT_FULL:
      return "length";
    case v1::FINISH_REASON_CANCELLED:
      return "abort";
    case v1::FINISH_REASON_ERROR:
      return "error";
    case v1::FINISH_REASON_TOOL_CALLS:
      return "tool_calls";
    default:
      return nullptr;
  }
}

// One tool-call delta as OpenAI streams it (the first of a call names it).
Json ToolCallDeltaJson(const v1::ToolCallDelta& call) {
  Json json;
  json["index"] = call.index();
  Json function = Json::object();
  if (!call.id().empty()) {
    json["id"] = call.id();
    json["type"] = call.type();
    function["name"] = call.function_name();
  }
  function["arguments"] = call.arguments();
  json["function"] = std::move(function);
  return json;
}

bool IsLast(const v1::GenerateResponse& response) {
  return response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
}

Json Bytes(const std::string& text) {
  Json bytes = Json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

std::string AlternativeText(const ResponseContext& context, const v1::TopLogprob& top) {
  return top.text().empty() ? context.token_text(top.token_id()) : top.text();
}

// Chat: {"token", "logprob", "bytes", "top_logprobs": [...]} per token.
void AppendChatLogprobs(const ResponseContext& context,
                        const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
                        Json* content) {
  for (const v1::TokenLogprob& lp : logprobs) {
    const std::string text = context.token_text(lp.token_id());
    Json entry;
    entry["token"] = text;
    entry["logprob"] = lp.logprob();
    entry["bytes"] = Bytes(text);
    Json top = Json::array();
    const int shown = std::min(context.top_logprobs, lp.top_size());
    for (int i = 0; i < shown; ++i) {
      const std::string alt = AlternativeText(context, lp.top(i));
      Json alternative;
      alternative["token"] = alt;
      alternative["logprob"] = lp.top(i).logprob();
      alternative["bytes"] = Bytes(alt);
      top.push_back(std::move(alternative));
    }
    entry["top_logprobs"] = std::move(top);
    content->push_back(std::move(entry));
  }
}

// Completions: parallel arrays tokens / token_logprobs / top_logprobs / text_offset.
struct CompletionLogprobs {
  Json tokens = Json::array();
  Json token_logprobs = Json::array();
  Json top_logprobs = Json::array();
  Json text_offset = Json::array();

  void Append(const ResponseContext& context,
              const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
              int64_t* offset) {
    for (const v1::TokenLogprob& lp : logprobs) {
      const std::string text = context.token_text(lp.token_id());
      tokens.push_back(text);
      token_logprobs.push_back(lp.logprob());
      Json top = Json::object();
      const int shown = std::min(context.top_logprobs, lp.top_size());
      for (int i = 0; i < shown; ++i)
        top[AlternativeText(context, lp.top(i))] = lp.top(i).logprob();
      top_logprobs.push_back(std::move(top));
      text_offset.push_back(*offset);
      *offset += static_cast<int64_t>(text.size());
    }
  }

  Json ToJson() && {
    Json json;
    json["tokens"] = std::move(tokens);
    json["token_logprobs"] = std::move(token_logprobs);
    json["top_logprobs"] = std::move(top_logprobs);
    json["text_offset"] = std::move(text_offset);
    return json;
  }
};

bool IsChat(const ResponseContext& context) {
  return context.endpoint == OpenAiEndpoint::kChatCompletions;
}

Json Header(const ResponseContext& context, bool chunk) {
  Json json;
  json["id"] = context.id;
  json["object"] =
      IsChat(context) ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  json["created"] = context.created_unix_seconds;
  json["model"] = context.model;
  return json;
}

Json UsageJson(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  Json usage;
  usage["prompt_tokens"] = prompt_tokens;
  usage["completion_tokens"] = completion_tokens;
  usage["total_tokens"] = prompt_tokens + completion_tokens;
  // Prompt tokens whose KV came from the prefix cache (OpenAI's prompt caching field).
  usage["prompt_tokens_details"] = Json{{"cached_tokens", cached_tokens}};
  return usage;
}

// Token counts of one choice from its last response (counted from the ids when the
// backend sent no usage).
void CountUsage(const v1::GenerateResponse& last, int64_t ids_seen, int32_t* prompt_tokens,
                int32_t* completion_tokens, int32_t* cached_tokens) {
  if (last.has_usage()) {
    *prompt_tokens = last.usage().prompt_tokens();
    *completion_tokens = last.usage().completion_tokens();
    *cached_tokens = last.usage().cached_prompt_tokens();
  } else {
    *completion_tokens = static_cast<int32_t>(ids_seen);
  }
}

Json TokenIdsJson(const google::protobuf::RepeatedField<int32_t>& ids) {
  return Json(std::vector<int32_t>(ids.begin(), ids.end()));
}

}  // namespace

ResponseContext MakeResponseContext(const OpenAiRequest& request, const std::string& id_suffix,
                                    std::string model,
                                    std::function<std::string(int32_t)> token_text) {
  ResponseContext context;
  context.endpoint = request.endpoint;
  context.id = absl::StrCat(
      request.endpoint == OpenAiEndpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", id_suffix);
  context.model = std::move(model);
  context.n = std::max(1, request.generate.n());
  context.logprobs = request.logprobs;
  context.top_logprobs = request.top_logprobs;
  context.include_usage = request.include_usage;
  context.return_token_ids = request.return_token_ids;
  if (request.echo) context.echo = request.generate.text();
  context.token_text = std::move(token_text);
  return context;
}

std::string FormatCompletion(const ResponseContext& context,
                             const std::vector<v1::GenerateResponse>& responses) {
  struct Choice {
    std::string text;
    std::vector<int32_t> token_ids;
    v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
    google::protobuf::RepeatedPtrField<v1::TokenLogprob> logprobs;
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t cached_tokens = 0;
    std::vector<v1::ToolCallDelta> tool_calls;  // merged: one per call
    std::string reasoning;
  };
  std::vector<Choice> choices(static_cast<size_t>(context.n));
  for (const v1::GenerateResponse& r : responses) {
    if (r.index() < 0 || r.index() >= context.n) continue;
    Choice& c = choices[static_cast<size_t>(r.index())];
    c.text += r.text();
    c.reasoning += r.reasoning_text();
    c.token_ids.insert(c.token_ids.end(), r.token_ids().begin(), r.token_ids().end());
    c.logprobs.MergeFrom(r.logprobs());
    for (const v1::ToolCallDelta& call : r.tool_calls()) {
      if (call.index() < 0 || call.index() > static_cast<int32_t>(c.tool_calls.size())) continue;
      if (call.index() == static_cast<int32_t>(c.tool_calls.size())) c.tool_calls.emplace_back();
      v1::ToolCallDelta& merged = c.tool_calls[call.index()];
      const std::string arguments = merged.arguments() + call.arguments();
      if (!call.id().empty()) merged = call;
      merged.set_arguments(arguments);
    }
    if (IsLast(r)) {
      c.finish_reason = r.finish_reason();
      CountUsage(r, static_cast<int64_t>(c.token_ids.size()), &c.prompt_tokens,
                 &c.completion_tokens, &c.cached_tokens);
    }
  }

  Json json = Header(context, /*chunk=*/false);
  Json choices_json = Json::array();
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    Choice& c = choices[i];
    prompt_tokens = std::max<int64_t>(prompt_tokens, c.prompt_tokens);
    cached_tokens = std::max<int64_t>(cached_tokens, c.cached_tokens);
    completion_tokens += c.completion_tokens;
    Json choice;
    choice["index"] = static_cast<int64_t>(i);
    Json logprobs = nullptr;
    if (IsChat(context)) {
      Json message;
      message["role"] = "assistant";
      // OpenAI's content is null in a turn that only calls tools.
      message["content"] = c.text.empty() && !c.tool_calls.empty() ? Json() : Json(c.text);
      if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
      if (!c.tool_calls.empty()) {
        Json calls = Json::array();
        for (const v1::ToolCallDelta& call : c.tool_calls) {
          Json json = ToolCallDeltaJson(call);
          json.erase("index");
          calls.push_back(std::move(json));
        }
        message["tool_calls"] = std::move(calls);
      }
      choice["message"] = std::move(message);
      if (context.logprobs) {
        Json content = Json::array();
        AppendChatLogprobs(context, c.logprobs, &content);
        logprobs = Json::object();
        logprobs["content"] = std::move(content);
      }
    } else {
      choice["text"] = context.echo + c.text;
      if (context.logprobs) {
        CompletionLogprobs lp;
        int64_t offset = 0;
        lp.Append(context, c.logprobs, &offset);
        logprobs = std::move(lp).ToJson();
      }
    }
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = FinishReasonJson(c.finish_reason);
    if (context.return_token_ids) choice["token_ids"] = Json(c.token_ids);
    choices_json.push_back(std::move(choice));
  }
  json["choices"] = std::move(choices_json);
  json["usage"] = UsageJson(prompt_tokens, completion_tokens, cached_tokens);
  return Dump(json);
}

std::string StreamFormatter::Begin() {
  if (!IsChat(context_)) {
    if (context_.echo.empty()) return "";
    std::string events;  // the echoed prompt first, one chunk per choice
    for (int i = 0; i < context_.n; ++i) {
      Json chunk = Header(context_, /*chunk=*/true);
      chunk["choices"] = Json::array({Json{{"index", i},
                                           {"text", context_.echo},
                                           {"logprobs", nullptr},
                                           {"finish_reason", nullptr}}});
      if (context_.include_usage) chunk["usage"] = nullptr;
      events += SseEvent(chunk);
    }
    return events;
  }
  std::string events;
  for (int i = 0; i < context_.n; ++i) {
    Json chunk = Header(context_, /*chunk=*/true);
    Json choice;
    choice["index"] = i;
    choice["delta"] = Json{{"role", "assistant"}, {"content", ""}};
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = nullptr;
    chunk["choices"] = Json::array({std::move(choice)});
    if (context_.include_usage) chunk["usage"] = nullptr;
    events += SseEvent(chunk);
  }
  return events;
}

std::string StreamFormatter::Add(const v1::GenerateResponse& response) {
  const int32_t index = response.index();
  if (index < 0 || index >= context_.n) return "";
  Choice& state = choices_[index];
  std::string events;
  auto make_chunk = [&](Json choice) {
    Json chunk = Header(context_, /*chunk=*/true);
    chunk["choices"] = Json::array({std::move(choice)});
    if (context_.include_usage) chunk["usage"] = nullptr;
    return SseEvent(chunk);
  };

  const bool has_content = !response.text().empty() || response.logprobs_size() > 0 ||
                           response.tool_calls_size() > 0 || !response.reasoning_text().empty() ||
                           (context_.return_token_ids && response.token_ids_size() > 0);
  if (has_content) {
    Json choice;
    choice["index"] = index;
    Json logprobs = nullptr;
    if (IsChat(context_)) {
      Json delta = Json::object();
      if (!response.reasoning_text().empty())
        delta["reasoning_content"] = response.reasoning_text();
      if (!response.text().empty() ||
          (response.tool_calls_size() == 0 && response.reasoning_text().empty())) {
        delta["content"] = response.text();
      }
      if (response.tool_calls_size() > 0) {
        Json calls = Json::array();
        for (const v1::ToolCallDelta& call : response.tool_calls()) {
          calls.push_back(ToolCallDeltaJson(call));
        }
        delta["tool_calls"] = std::move(calls);
      }
      choice["delta"] = std::move(delta);
      if (context_.logprobs) {
        Json content = Json::array();
        AppendChatLogprobs(context_, response.logprobs(), &content);
        logprobs = Json::object();
        logprobs["content"] = std::move(content);
      }
    } else {
      choice["text"] = response.text();
      if (context_.logprobs) {
        CompletionLogprobs lp;
        lp.Append(context_, response.logprobs(), &state.text_offset);
        logprobs = std::move(lp).ToJson();
      }
    }
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = nullptr;
    if (context_.return_token_ids) choice["token_ids"] = TokenIdsJson(response.token_ids());
    events += make_chunk(std::move(choice));
  }
  state.completion_tokens += response.token_ids_size();

  if (IsLast(response)) {
    int32_t counted = state.completion_tokens;
    CountUsage(response, counted, &state.prompt_tokens, &state.completion_tokens,
               &state.cached_tokens);
    Json choice;
    choice["index"] = index;
    if (IsChat(context_)) {
      choice["delta"] = Json::object();
    } else {
      choice["text"] = "";
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = FinishReasonJson(response.finish_reason());
    events += make_chunk(std::move(choice));
  }
  return events;
}

std::string StreamFormatter::End(const absl::Status& status) {
  std::string events;
  if (!status.ok()) {
    events += absl::StrCat("data: ", ErrorJson(status), "\n\n");
  } else if (context_.include_usage) {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t cached_tokens = 0;
    for (const auto& [index, choice] : choices_) {
      prompt_tokens = std::max<int64_t>(prompt_tokens, choice.prompt_tokens);
      cached_tokens = std::max<int64_t>(cached_tokens, choice.cached_tokens);
      completion_tokens += choice.completion_tokens;
    }
    Json chunk = Header(context_, /*chunk=*/true);
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageJson(prompt_tokens, completion_tokens, cached_tokens);
    events += SseEvent(chunk);
  }
  events += "data: [DONE]\n\n";
  return events;
}

}  // namespace dsv3::router
