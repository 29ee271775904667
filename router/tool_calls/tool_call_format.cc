#include "router/tool_calls/tool_call_format.h"

#include "absl/strings/str_cat.h"
#include "router/tool_calls/deepseek_v3_tool_calls.h"

namespace dsv3::router {

absl::StatusOr<std::unique_ptr<ToolCallFormat>> ToolCallFormatByName(const std::string& name) {
  if (name.empty() || name == "none") return nullptr;
  if (name == "deepseek_v3") return NewDeepSeekV3ToolCalls();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tool-call format '", name, "' (known: deepseek_v3, none)"));
}

std::string DefaultToolCallFormat(const std::string& model_type) {
  // DeepSeek-V2's and Kimi-K2's formats differ; they get their own files when supported.
  return model_type == "deepseek_v3" ? "deepseek_v3" : "none";
}

}  // namespace dsv3::router
