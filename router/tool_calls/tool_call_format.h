#ifndef DSV3_ROUTER_TOOL_CALLS_TOOL_CALL_FORMAT_H_
#define DSV3_ROUTER_TOOL_CALLS_TOOL_CALL_FORMAT_H_

// Tool calls as one model family writes them: the grammar of a turn that must call a tool
// (tool_choice "required" or a named function; enforced by constrained decoding), and a
// streaming parser that splits the model's text into content and tool calls. One file per
// format (deepseek_v3_tool_calls.cc); --tool_call_parser picks one.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dsv3/v1/inference.pb.h"

namespace dsv3::router {

class ToolCallParser {
 public:
  virtual ~ToolCallParser() = default;
  struct Delta {
    std::string content;                   // text that is not part of a call
    std::vector<v1::ToolCallDelta> calls;  // as OpenAI streams them
  };
  // More text of the completion; `final`: the end (what was held back is released).
  // Text that may still turn out to start a call is held back until it cannot.
  virtual Delta Add(absl::string_view text, bool final) = 0;
  // How many calls have started.
  virtual int calls() const = 0;
};

class ToolCallFormat {
 public:
  virtual ~ToolCallFormat() = default;
  virtual std::string name() const = 0;
  // At least one call of one of `tools` (only `function` when not empty), at most one
  // when !parallel; then the end of the turn. INVALID_ARGUMENT for a tool whose parameters
  // schema is not supported (structured_output/grammar_builder.h), naming the tool.
  virtual absl::StatusOr<v1::Grammar> ForcedCallGrammar(const std::vector<v1::Tool>& tools,
                                                        const std::string& function,
                                                        bool parallel) const = 0;
  virtual std::unique_ptr<ToolCallParser> NewParser() const = 0;
};

// "deepseek_v3"; "none" or "": null (tool calls stay text). INVALID_ARGUMENT otherwise.
absl::StatusOr<std::unique_ptr<ToolCallFormat>> ToolCallFormatByName(const std::string& name);

// The format the model's family writes ("deepseek_v3" for DeepSeek-V3/R1), or "none".
std::string DefaultToolCallFormat(const std::string& model_type);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_TOOL_CALLS_TOOL_CALL_FORMAT_H_
