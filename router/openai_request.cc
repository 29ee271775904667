#include "router/openai_request.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "router/openai_error.h"

namespace dsv3::router {
namespace {

// Ordered: a JSON schema's properties are generated in the order the client wrote them.
using Json = nlohmann::ordered_json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int kMaxN = 4;
constexpr int kMaxLogprobs = 20;
constexpr int kMaxStopStrings = 16;

// Propagates an error status from an expression (early return, no nesting).
#define OPENAI_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    absl::Status _openai_status = (expr);            \
    if (!_openai_status.ok()) return _openai_status; \
  } while (0)

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& value) {
  return InvalidParam(
      param, absl::StrCat("'", param, "' must be ", expected, ", got ", value.type_name()));
}

// The value of `key`, or nullptr when absent or null (clients send null for "unset").
const Json* Field(const Json& object, const std::string& key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer in [lo, hi]. Floats (even 3.0), booleans and strings are wrong types.
absl::Status ReadInt(const Json& value, absl::string_view param, int64_t lo, int64_t hi,
                     int64_t* out) {
  if (!value.is_number_integer()) return WrongType(param, "an integer", value);
  bool in_range = false;
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    in_range = v <= static_cast<uint64_t>(hi) && static_cast<int64_t>(v) >= lo;
    if (in_range) *out = static_cast<int64_t>(v);
  } else {
    const int64_t v = value.get<int64_t>();
    in_range = v >= lo && v <= hi;
    if (in_range) *out = v;
  }
  if (!in_range) {
    return InvalidParam(param, absl::StrCat("'", param, "' must be between ", lo, " and ", hi,
                                            ", got ", value.dump()));
  }
  return absl::OkStatus();
}

enum class Bound { kClosed, kOpen };

// A finite number in the interval lo..hi (each end open or closed).
absl::Status ReadNumber(const Json& value, absl::string_view param, double lo, Bound lo_bound,
                        double hi, float* out) {
  if (!value.is_number()) return WrongType(param, "a number", value);
  const double v = value.get<double>();
  const bool above_lo = lo_bound == Bound::kOpen ? v > lo : v >= lo;
  if (!std::isfinite(v) || !above_lo || v > hi) {
    return InvalidParam(
        param, absl::StrCat("'", param, "' must be in ", lo_bound == Bound::kOpen ? "(" : "[", lo,
                            ", ", hi, "], got ", value.dump()));
  }
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& value, absl::string_view param, bool* out) {
  if (!value.is_boolean()) return WrongType(param, "a boolean", value);
  *out = value.get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const Json& value, absl::string_view param, std::string* out) {
  if (!value.is_string()) return WrongType(param, "a string", value);
  *out = value.get<std::string>();
  return absl::OkStatus();
}

// --- chat messages and tools ---------------------------------------------------------

// content: a string, or an array of {"type": "text", "text": ...} parts (joined by "\n"
// as vLLM does); null only where the message may omit it.
absl::Status ReadContent(const Json& value, const std::string& param, std::string* out) {
  if (value.is_string()) {
    *out = value.get<std::string>();
    return absl::OkStatus();
  }
  if (!value.is_array()) return WrongType(param, "a string or an array of parts", value);
  out->clear();
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& part = value[i];
    const std::string part_param = absl::StrCat(param, "[", i, "]");
    if (!part.is_object()) return WrongType(part_param, "an object", part);
    const Json* type = Field(part, "type");
    if (type == nullptr) {
      return InvalidParam(part_param + ".type",
                          absl::StrCat("'", part_param, ".type' is required"));
    }
    std::string type_name;
    OPENAI_RETURN_IF_ERROR(ReadString(*type, part_param + ".type", &type_name));
    if (type_name != "text") {
      return InvalidParam(part_param + ".type", absl::StrCat("content part type '", type_name,
                                                             "' is not supported (only 'text')"));
    }
    const Json* text = Field(part, "text");
    if (text == nullptr) {
      return InvalidParam(part_param + ".text",
                          absl::StrCat("'", part_param, ".text' is required"));
    }
    std::string piece;
    OPENAI_RETURN_IF_ERROR(ReadString(*text, part_param + ".text", &piece));
    if (i > 0) out->push_back('\n');
    out->append(piece);
  }
  return absl::OkStatus();
}

// JSON text of a value that may arrive as an object or as already-encoded text.
std::string JsonText(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

absl::Status ReadToolCalls(const Json& value, const std::string& param, v1::ChatMessage* message) {
  if (!value.is_array()) return WrongType(param, "an array", value);
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& call = value[i];
    const std::string call_param = absl::StrCat(param, "[", i, "]");
    if (!call.is_object()) return WrongType(call_param, "an object", call);
    v1::ToolCall* out = message->add_tool_calls();
    out->set_type("function");
    if (const Json* id = Field(call, "id")) {
      OPENAI_RETURN_IF_ERROR(ReadString(*id, call_param + ".id", out->mutable_id()));
    }
    if (const Json* type = Field(call, "type")) {
      OPENAI_RETURN_IF_ERROR(ReadString(*type, call_param + ".type", out->mutable_type()));
      if (out->type() != "function") {
        return InvalidParam(call_param + ".type", "only 'function' tool calls are supported");
      }
    }
    const Json* function = Field(call, "function");
    if (function == nullptr || !function->is_object()) {
      return InvalidParam(call_param + ".function",
                          absl::StrCat("'", call_param, ".function' must be an object"));
    }
    const Json* name = Field(*function, "name");
    if (name == nullptr) {
      return InvalidParam(call_param + ".function.name", "a tool call needs a function name");
    }
    OPENAI_RETURN_IF_ERROR(
        ReadString(*name, call_param + ".function.name", out->mutable_function_name()));
    if (const Json* arguments = Field(*function, "arguments")) {
      out->set_function_arguments(JsonText(*arguments));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadMessage(const Json& value, size_t index, v1::ChatMessage* message) {
  const std::string param = absl::StrCat("messages[", index, "]");
  if (!value.is_object()) return WrongType(param, "an object", value);
  const Json* role = Field(value, "role");
  if (role == nullptr)
    return InvalidParam(param + ".role", absl::StrCat("'", param, ".role' is required"));
  OPENAI_RETURN_IF_ERROR(ReadString(*role, param + ".role", message->mutable_role()));
  // "developer" is what newer OpenAI clients send for the system turn.
  if (message->role() == "developer") message->set_role("system");
  const std::string& r = message->role();
  if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
    return InvalidParam(
        param + ".role",
        absl::StrCat("unknown role '", r, "' (expected system, user, assistant or tool)"));
  }
  if (const Json* content = Field(value, "content")) {
    OPENAI_RETURN_IF_ERROR(ReadContent(*content, param + ".content", message->mutable_content()));
  } else if (r != "assistant") {
    return InvalidParam(param + ".content", absl::StrCat("'", param, ".content' is required"));
  }
  if (const Json* name = Field(value, "name")) {
    OPENAI_RETURN_IF_ERROR(ReadString(*name, param + ".name", message->mutable_name()));
  }
  if (const Json* tool_calls = Field(value, "tool_calls")) {
    OPENAI_RETURN_IF_ERROR(ReadToolCalls(*tool_calls, param + ".tool_calls", message));
  }
  if (const Json* tool_call_id = Field(value, "tool_call_id")) {
    OPENAI_RETURN_IF_ERROR(
        ReadString(*tool_call_id, param + ".tool_call_id", message->mutable_tool_call_id()));
  }
  return absl::OkStatus();
}

absl::Status ReadTools(const Json& value, v1::ChatPrompt* chat) {
  if (!value.is_array()) return WrongType("tools", "an array", value);
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& tool = value[i];
    const std::string param = absl::StrCat("tools[", i, "]");
    if (!tool.is_object()) return WrongType(param, "an object", tool);
    v1::Tool* out = chat->add_tools();
    out->set_type("function");
    if (const Json* type = Field(tool, "type")) {
      OPENAI_RETURN_IF_ERROR(ReadString(*type, param + ".type", out->mutable_type()));
      if (out->type() != "function") {
        return InvalidParam(param + ".type", "only 'function' tools are supported");
      }
    }
    const Json* function = Field(tool, "function");
    if (function == nullptr || !function->is_object()) {
      return InvalidParam(param + ".function",
                          absl::StrCat("'", param, ".function' must be an object"));
    }
    const Json* name = Field(*function, "name");
    if (name == nullptr)
      return InvalidParam(param + ".function.name", "a tool needs a function name");
    OPENAI_RETURN_IF_ERROR(ReadString(*name, param + ".function.name", out->mutable_name()));
    if (const Json* description = Field(*function, "description")) {
      OPENAI_RETURN_IF_ERROR(
          ReadString(*description, param + ".function.description", out->mutable_description()));
    }
    if (const Json* parameters = Field(*function, "parameters")) {
      if (!parameters->is_object()) {
        return WrongType(param + ".function.parameters", "an object (JSON Schema)", *parameters);
      }
      out->set_parameters_json(parameters->dump());
    }
  }
  return absl::OkStatus();
}

// "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}
absl::Status ReadToolChoice(const Json& value, v1::ToolChoice* out) {
  if (value.is_string()) {
    const std::string mode = value.get<std::string>();
    if (mode == "auto") {
      out->set_mode(v1::ToolChoice::TOOL_CHOICE_AUTO);
    } else if (mode == "none") {
      out->set_mode(v1::ToolChoice::TOOL_CHOICE_NONE);
    } else if (mode == "required") {
      out->set_mode(v1::ToolChoice::TOOL_CHOICE_REQUIRED);
    } else {
      return InvalidParam("tool_choice", absl::StrCat("unknown tool_choice '", mode,
                                                      "' (none, auto, required or a function)"));
    }
    return absl::OkStatus();
  }
  if (!value.is_object()) return WrongType("tool_choice", "a string or an object", value);
  const Json* function = Field(value, "function");
  const Json* name =
      function != nullptr && function->is_object() ? Field(*function, "name") : nullptr;
  if (name == nullptr) {
    return InvalidParam("tool_choice.function.name", "tool_choice names no function");
  }
  OPENAI_RETURN_IF_ERROR(
      ReadString(*name, "tool_choice.function.name", out->mutable_function_name()));
  out->set_mode(v1::ToolChoice::TOOL_CHOICE_FUNCTION);
  return absl::OkStatus();
}

// {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}
absl::Status ReadResponseFormat(const Json& value, v1::GenerateRequest* request) {
  if (!value.is_object()) return WrongType("response_format", "an object", value);
  const Json* type = Field(value, "type");
  std::string kind;
  if (type == nullptr) return InvalidParam("response_format.type", "response_format needs a type");
  OPENAI_RETURN_IF_ERROR(ReadString(*type, "response_format.type", &kind));
  if (kind == "text") return absl::OkStatus();
  if (kind == "json_object") {
    request->mutable_response_format()->set_json_object(true);
    return absl::OkStatus();
  }
  if (kind != "json_schema") {
    return InvalidParam("response_format.type",
                        absl::StrCat("unknown response_format type '", kind,
                                     "' (text, json_object or json_schema)"));
  }
  const Json* spec = Field(value, "json_schema");
  if (spec == nullptr || !spec->is_object()) {
    return InvalidParam("response_format.json_schema",
                        "response_format.json_schema must be an object with a 'schema'");
  }
  const Json* schema = Field(*spec, "schema");
  if (schema == nullptr) {
    // OpenAI's own default: no schema, any JSON object.
    request->mutable_response_format()->set_json_object(true);
    return absl::OkStatus();
  }
  if (!schema->is_object() && !schema->is_boolean()) {
    return WrongType("response_format.json_schema.schema", "an object (JSON Schema)", *schema);
  }
  if (const Json* strict = Field(*spec, "strict"); strict != nullptr && !strict->is_boolean()) {
    return WrongType("response_format.json_schema.strict", "a boolean", *strict);
  }
  // strict or not, the schema is enforced (what strict=false permits, strict output meets).
  request->mutable_response_format()->set_json_schema(schema->dump());
  return absl::OkStatus();
}

absl::Status ReadChatPrompt(const Json& body, v1::GenerateRequest* request) {
  const Json* messages = Field(body, "messages");
  if (messages == nullptr) return InvalidParam("messages", "'messages' is required");
  if (!messages->is_array()) return WrongType("messages", "an array", *messages);
  if (messages->empty()) return InvalidParam("messages", "'messages' must not be empty");
  v1::ChatPrompt* chat = request->mutable_chat();
  for (size_t i = 0; i < messages->size(); ++i) {
    OPENAI_RETURN_IF_ERROR(ReadMessage((*messages)[i], i, chat->add_messages()));
  }
  if (const Json* tools = Field(body, "tools")) OPENAI_RETURN_IF_ERROR(ReadTools(*tools, chat));
  if (const Json* choice = Field(body, "tool_choice")) {
    OPENAI_RETURN_IF_ERROR(ReadToolChoice(*choice, chat->mutable_tool_choice()));
  }
  if (const Json* parallel = Field(body, "parallel_tool_calls")) {
    bool value = true;
    OPENAI_RETURN_IF_ERROR(ReadBool(*parallel, "parallel_tool_calls", &value));
    chat->set_parallel_tool_calls(value);
  }
  if (const Json* add = Field(body, "add_generation_prompt")) {
    bool value = true;
    OPENAI_RETURN_IF_ERROR(ReadBool(*add, "add_generation_prompt", &value));
    chat->set_add_generation_prompt(value);
  }
  return absl::OkStatus();
}

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
  }
  if (const Json* v = Field(body, "top_p")) {
    OPENAI_RETURN_IF_ERROR(ReadNumber(*v, "top_p", 0, Bound::kOpen, 1, &number));
    sampling->set_top_p(number);
  }
  if (const Json* v = Field(body, "top_k")) {
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
                                "response_format"};
  static const std::set<std::string>* const kChat = [] {
    auto* fields = new std::set<std::string>(*kCommon);
    fields->insert({"messages", "tools", "top_logprobs", "add_generation_prompt", "tool_choice",
                    "parallel_tool_calls"});
    return fields;
  }();
  static const std::set<std::string>* const kCompletion = [] {
    auto* fields = new std::set<std::string>(*kCommon);
    fields->insert({"prompt", "echo"});
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
      bool value = false;
      OPENAI_RETURN_IF_ERROR(ReadBool(*echo, "echo", &value));
      if (value) return InvalidParam("echo", "'echo' is not supported");
    }
  }
  OPENAI_RETURN_IF_ERROR(ReadSampling(body, out));
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

#undef OPENAI_RETURN_IF_ERROR

}  // namespace

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
  absl::Status status = ReadRequest(json, &request);
  if (!status.ok()) return status;
  return request;
}

}  // namespace dsv3::router
