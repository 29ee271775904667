#include "router/output_plan.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "structured_output/grammar_builder.h"
#include "structured_output/grammar_matcher.h"

namespace dsv3::router {

absl::StatusOr<OutputPlan> PlanOutput(const v1::GenerateRequest& request,
                                      const std::string& tool_call_parser,
                                      const std::string& model_type, bool has_tokenizer,
                                      v1::SamplingParams* sampling) {
  OutputPlan plan;
  const bool constrained_already = sampling->has_grammar();  // a gRPC client's own grammar
  if (request.has_response_format()) {
    const v1::ResponseFormat& format = request.response_format();
    if (format.kind_case() == v1::ResponseFormat::kJsonObject) {
      *sampling->mutable_grammar() = structured_output::JsonObjectGrammar();
    } else if (format.kind_case() == v1::ResponseFormat::kJsonSchema) {
      if (format.json_schema().size() > structured_output::GrammarBuilder::kMaxSchemaBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("the JSON schema is over ",
                         structured_output::GrammarBuilder::kMaxSchemaBytes, " bytes"));
      }
      auto schema = nlohmann::ordered_json::parse(format.json_schema(), nullptr, false);
      if (schema.is_discarded()) return absl::InvalidArgumentError("the JSON schema is not JSON");
      DSV3_ASSIGN_OR_RETURN(*sampling->mutable_grammar(),
                            structured_output::JsonSchemaGrammar(schema));
    }
  }
  if (request.has_chat()) {
    const v1::ChatPrompt& chat = request.chat();
    const v1::ToolChoice::Mode mode = chat.tool_choice().mode();
    const bool forced = mode == v1::ToolChoice::TOOL_CHOICE_REQUIRED ||
                        mode == v1::ToolChoice::TOOL_CHOICE_FUNCTION;
    if (forced && chat.tools().empty()) {
      return absl::InvalidArgumentError("tool_choice forces a tool call, but no tools are given");
    }
    if (!chat.tools().empty() && mode != v1::ToolChoice::TOOL_CHOICE_NONE) {
      const std::string name =
          tool_call_parser == "auto" ? DefaultToolCallFormat(model_type) : tool_call_parser;
      DSV3_ASSIGN_OR_RETURN(plan.tool_calls, ToolCallFormatByName(name));
    }
    if (forced) {
      if (plan.tool_calls == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tool_choice forces a tool call, but this router parses no tool calls for model "
            "type '",
            model_type, "' (--tool_call_parser)"));
      }
      if (sampling->has_grammar() || request.has_response_format()) {
        return absl::InvalidArgumentError(
            "response_format and a forced tool call cannot both constrain one turn");
      }
      const std::vector<v1::Tool> tools(chat.tools().begin(), chat.tools().end());
      DSV3_ASSIGN_OR_RETURN(
          *sampling->mutable_grammar(),
          plan.tool_calls->ForcedCallGrammar(
              tools,
              mode == v1::ToolChoice::TOOL_CHOICE_FUNCTION ? chat.tool_choice().function_name()
                                                           : "",
              !chat.has_parallel_tool_calls() || chat.parallel_tool_calls()));
    }
  }
  if (sampling->has_grammar()) {
    if (!has_tokenizer) {
      return absl::InvalidArgumentError(
          "structured output (response_format, a forced tool call) needs a model with a "
          "tokenizer");
    }
    if (constrained_already && request.has_response_format()) {
      return absl::InvalidArgumentError("sampling.grammar and response_format are exclusive");
    }
    auto compiled = structured_output::CompiledGrammar::Compile(sampling->grammar());
    if (!compiled.ok()) return compiled.status();
  }
  return plan;
}

}  // namespace dsv3::router
