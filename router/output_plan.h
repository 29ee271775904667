#ifndef DSV3_ROUTER_OUTPUT_PLAN_H_
#define DSV3_ROUTER_OUTPUT_PLAN_H_

// What a request asks of its output beyond sampling: the grammar the workers enforce
// (response_format json_object / json_schema, or tool_choice "required" / a named function)
// and whether its text is parsed for tool calls (a chat with tools, tool_choice not
// "none", a tool-call format for the model). Every part is checked here, at the router:
// an unsupported schema keyword or a grammar that does not compile is INVALID_ARGUMENT
// before any worker is asked.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dsv3/v1/inference.pb.h"
#include "router/tool_calls/tool_call_format.h"

namespace dsv3::router {

struct OutputPlan {
  // Non-null: parse the text for tool calls in this format.
  std::shared_ptr<const ToolCallFormat> tool_calls;
};

// `tool_call_parser`: --tool_call_parser ("auto" picks by `model_type`). Sets
// sampling->grammar when the output is constrained.
absl::StatusOr<OutputPlan> PlanOutput(const v1::GenerateRequest& request,
                                      const std::string& tool_call_parser,
                                      const std::string& model_type, bool has_tokenizer,
                                      v1::SamplingParams* sampling);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OUTPUT_PLAN_H_
