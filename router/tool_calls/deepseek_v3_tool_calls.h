#ifndef DSV3_ROUTER_TOOL_CALLS_DEEPSEEK_V3_TOOL_CALLS_H_
#define DSV3_ROUTER_TOOL_CALLS_DEEPSEEK_V3_TOOL_CALLS_H_

#include <memory>

#include "router/tool_calls/tool_call_format.h"

namespace dsv3::router {

// DeepSeek-V3 / R1 (see the .cc for the format).
std::unique_ptr<ToolCallFormat> NewDeepSeekV3ToolCalls();

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_TOOL_CALLS_DEEPSEEK_V3_TOOL_CALLS_H_
