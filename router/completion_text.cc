#include "router/completion_text.h"

#include <algorithm>

#include "common/status_macros.h"

namespace dsv3::router {
namespace {

// Largest cut <= `cut` that does not split a UTF-8 character of `s`.
size_t Utf8Floor(const std::string& s, size_t cut) {
  while (cut > 0 && cut < s.size() && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

}  // namespace

CompletionText::CompletionText(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop,
                               bool skip_special_tokens)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {
  if (tokenizer_ != nullptr) {
    tokenizer::DecodeOptions options;
    options.skip_special_tokens = skip_special_tokens;
    detokenizer_ = std::make_unique<tokenizer::StreamDetokenizer>(*tokenizer_, options);
  }
  for (const auto& s : stop_) hold_ = std::max(hold_, s.empty() ? 0 : s.size() - 1);
}

absl::StatusOr<CompletionText::Delta> CompletionText::Add(int32_t token) {
  if (detokenizer_ == nullptr || stopped_) return Delta{};
  DSV3_ASSIGN_OR_RETURN(std::string text, detokenizer_->Add(token));
  pending_ += text;
  return Release(/*final=*/false);
}

CompletionText::Delta CompletionText::Release(bool final) {
  Delta d;
  // The earliest stop string in what is pending (held-back text + new text: a match that
  // completes now cannot start before the held-back part).
  size_t best = std::string::npos;
  for (const auto& s : stop_) {
    if (s.empty()) continue;
    size_t at = pending_.find(s);
    if (at != std::string::npos && (best == std::string::npos || at < best)) {
      best = at;
      d.matched = s;
    }
  }
  if (best != std::string::npos) {
    d.text = pending_.substr(0, best);
    d.stopped = true;
    stopped_ = true;
    pending_.clear();
    return d;
  }
  size_t cut = final ? pending_.size() : (pending_.size() > hold_ ? pending_.size() - hold_ : 0);
  cut = Utf8Floor(pending_, cut);
  d.text = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return d;
}

std::string CompletionText::Finish() {
  if (detokenizer_ == nullptr || stopped_) return "";
  pending_ += detokenizer_->Finish();
  Delta d = Release(/*final=*/true);
  return d.text;
}

}  // namespace dsv3::router
