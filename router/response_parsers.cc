#include "router/response_parsers.h"

#include <utility>

namespace dsv3::router {

ResponseParsers::ResponseParsers(const ToolCallFormat* tool_calls,
                                 const std::string& reasoning_parser)
    : reasoning_(NewReasoningParser(reasoning_parser).value_or(nullptr)),
      tool_calls_(tool_calls != nullptr ? tool_calls->NewParser() : nullptr) {}

void ResponseParsers::Apply(v1::GenerateResponse* response) {
  const bool last = response->finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
  if (reasoning_ != nullptr) {
    ReasoningParser::Delta split = reasoning_->Add(response->text(), last);
    response->set_reasoning_text(std::move(split.reasoning));
    response->set_text(std::move(split.content));
  }
  if (tool_calls_ != nullptr) {
    ToolCallParser::Delta parsed = tool_calls_->Add(response->text(), last);
    response->set_text(std::move(parsed.content));
    for (v1::ToolCallDelta& call : parsed.calls) *response->add_tool_calls() = std::move(call);
    if (response->finish_reason() == v1::FINISH_REASON_STOP && tool_calls_->calls() > 0) {
      response->set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
    }
  }
}

}  // namespace dsv3::router
