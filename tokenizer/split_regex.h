#ifndef DSV3_TOKENIZER_SPLIT_REGEX_H_
#define DSV3_TOKENIZER_SPLIT_REGEX_H_

// A pre-tokenizer pattern compiled with PCRE2 (JIT when available). tokenizer.json patterns
// are written for Oniguruma (what Hugging Face `tokenizers` uses); TranslateOnigurumaPattern
// rewrites the constructs whose meaning differs in PCRE2 and refuses the ones it cannot
// reproduce, so a pattern never silently matches something else.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace dsv3::tokenizer {

// Oniguruma (Ruby syntax, Unicode) -> PCRE2 (UTF + UCP + MULTILINE):
//   \s, \S   -> the Unicode White_Space set and its complement (PCRE2's \s differs: U+180E)
//   \d, \D   -> \p{Nd}, \P{Nd}
//   \w \W \b \B \h \H \G, nested classes, \S inside a class -> UNIMPLEMENTED
[[nodiscard]] absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view pattern);

class SplitRegex {
 public:
  // `literal`: the pattern is a plain string to find (tokenizer.json {"String": ...}).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SplitRegex>> Create(absl::string_view pattern,
                                                                          bool literal);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  // Calls `on_match(start, end)` for each non-overlapping match in `text`, left to right
  // (byte offsets into `text`; empty matches are skipped). `text` must be valid UTF-8.
  // Fails (RESOURCE_EXHAUSTED) only when PCRE2 runs out of its match limits.
  [[nodiscard]] absl::Status ForEachMatch(absl::string_view text,
                    absl::FunctionRef<void(size_t start, size_t end)> on_match) const;

 private:
  explicit SplitRegex(pcre2_code* code, bool jit) : code_(code), jit_(jit) {}
  pcre2_code* code_;
  bool jit_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_SPLIT_REGEX_H_
