#ifndef DSV3_ROUTER_RESPONSE_PARSERS_H_
#define DSV3_ROUTER_RESPONSE_PARSERS_H_

// What OpenAI returns apart from a completion's text, split off as the text streams:
// first the reasoning (router/reasoning/), then tool calls from what is left
// (router/tool_calls/). One per completion.

#include <memory>
#include <string>

#include "dsv3/v1/inference.pb.h"
#include "router/reasoning/reasoning_parser.h"
#include "router/tool_calls/tool_call_format.h"

namespace dsv3::router {

class ResponseParsers {
 public:
  // `tool_calls` may be null and `reasoning_parser` empty (nothing is split off).
  ResponseParsers(const ToolCallFormat* tool_calls, const std::string& reasoning_parser);

  // Moves reasoning and tool calls out of response->text() into reasoning_text and
  // tool_calls; a turn that called tools and stopped ends with FINISH_REASON_TOOL_CALLS.
  void Apply(v1::GenerateResponse* response);

 private:
  std::unique_ptr<ReasoningParser> reasoning_;
  std::unique_ptr<ToolCallParser> tool_calls_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_RESPONSE_PARSERS_H_
