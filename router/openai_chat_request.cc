#include "router/openai_chat_request.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "router/openai_error.h"

namespace dsv3::router {

using openai_json::Field;
using openai_json::Json;
using openai_json::ReadBool;
using openai_json::ReadString;
using openai_json::WrongType;

namespace {

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

}  // namespace

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

}  // namespace dsv3::router
