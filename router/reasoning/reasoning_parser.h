#ifndef DSV3_ROUTER_REASONING_REASONING_PARSER_H_
#define DSV3_ROUTER_REASONING_REASONING_PARSER_H_

// Reasoning models think before they answer; the thinking goes to the client apart from the
// answer (DeepSeek-R1's convention, which vLLM and SGLang follow: `reasoning_content` beside
// `content`). A parser splits a completion's text as it streams; one file per format
// (deepseek_r1_reasoning.cc); --reasoning_parser picks one.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::router {

class ReasoningParser {
 public:
  virtual ~ReasoningParser() = default;
  struct Delta {
    std::string reasoning;
    std::string content;
  };
  // More text; `final`: the end (what was held back is released). Text that may still be
  // the start of the end-of-thinking marker is held back until it cannot.
  virtual Delta Add(absl::string_view text, bool final) = 0;
};

// A new parser per completion, for a --reasoning_parser name: "deepseek_r1"; "none" or ""
// is null. INVALID_ARGUMENT for an unknown name.
absl::StatusOr<std::unique_ptr<ReasoningParser>> NewReasoningParser(const std::string& name);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_REASONING_REASONING_PARSER_H_
