// DeepSeek-R1: the answer follows "</think>"; everything before it is reasoning. R1's chat
// template opens the thinking in the prompt ("<think>\n" after the assistant marker), so the
// output usually starts inside it; an output that opens with "<think>" itself drops it.
// With no "</think>" at all (cut by max_tokens) the whole text is reasoning.

#include <algorithm>
#include <string>
#include <string_view>

#include "router/reasoning/reasoning_parser.h"
#include "router/text_markers.h"

namespace dsv3::router {
namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

class DeepSeekR1Reasoning : public ReasoningParser {
 public:
  Delta Add(absl::string_view text, bool final) override {
    Delta out;
    if (answering_) {
      out.content.assign(text.data(), text.size());
      // The answer usually starts on a new line after the marker.
      if (skip_newline_ && !out.content.empty()) {
        if (out.content.front() == '\n') out.content.erase(0, 1);
        skip_newline_ = false;
      }
      return out;
    }
    pending_.append(text.data(), text.size());
    if (at_start_) {
      // Wait until the text can be told from "<think>".
      const std::string_view head(pending_);
      if (!final && head.size() < kOpen.size() && kOpen.substr(0, head.size()) == head) return out;
      if (head.substr(0, kOpen.size()) == kOpen) pending_.erase(0, kOpen.size());
      at_start_ = false;
    }
    const size_t close = pending_.find(kClose);
    if (close != std::string::npos) {
      out.reasoning = pending_.substr(0, close);
      const std::string rest = pending_.substr(close + kClose.size());
      pending_.clear();
      answering_ = true;
      skip_newline_ = true;
      out.content = Add(rest, final).content;
      return out;
    }
    const size_t keep = final ? 0 : PartialMarkerSuffix(pending_, kClose);
    out.reasoning = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
  }

 private:
  bool at_start_ = true;
  bool answering_ = false;
  bool skip_newline_ = false;
  std::string pending_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ReasoningParser>> NewReasoningParser(const std::string& name) {
  if (name.empty() || name == "none") return nullptr;
  if (name == "deepseek_r1") return std::make_unique<DeepSeekR1Reasoning>();
  return absl::InvalidArgumentError("unknown reasoning parser '" + name +
                                    "' (known: deepseek_r1, none)");
}

}  // namespace dsv3::router
