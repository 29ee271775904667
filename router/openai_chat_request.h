#ifndef DSV3_ROUTER_OPENAI_CHAT_REQUEST_H_
#define DSV3_ROUTER_OPENAI_CHAT_REQUEST_H_

// The chat parts of an OpenAI request body: messages (with tool calls and tool results),
// tools, tool_choice, parallel_tool_calls; and response_format.

#include "absl/status/status.h"
#include "dsv3/v1/inference.pb.h"
#include "router/openai_json_fields.h"

namespace dsv3::router {

absl::Status ReadChatPrompt(const openai_json::Json& body, v1::GenerateRequest* request);
// {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}
absl::Status ReadResponseFormat(const openai_json::Json& value, v1::GenerateRequest* request);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OPENAI_CHAT_REQUEST_H_
