#ifndef DSV3_TOKENIZER_SPLIT_REGEX_H_
#define DSV3_TOKENIZER_SPLIT_REGEX_H_

// A pre-tokenizer pattern compiled with PCRE2 (JIT when available). tokenizer.json patterns
// are written for Oniguruma (what Hugging Face `tokenizers` uses); TranslateOnigurumaPattern
// rewrites the constructs whose meaning differs in PCRE2 and refuses the ones it cannot
// reproduce, so a pattern never silently matches something else.
//
// Unicode version: the JS reference runs the pattern with node's Unicode tables, newer than
// PCRE2's (Debian 12: Unicode 14), so characters added since (or whose category moved) would
// fall in other \p{..} classes. General_Category properties are therefore rewritten from
// unicode_gc_table.h (the code points whose category differs, with node's); see AppendClass in
// split_regex.cc. Other properties (scripts, binary properties) keep PCRE2's tables.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::tokenizer {

// Oniguruma (Ruby syntax, Unicode) -> PCRE2 (UTF + UCP + MULTILINE):
//   \s, \S   -> the Unicode White_Space set and its complement (PCRE2's \s differs: U+180E)
//   \d, \D   -> \p{Nd}, \P{Nd}
//   \w \W \b \B \h \H \G, nested classes, \S inside a class -> UNIMPLEMENTED
// and, with `update_categories`, General_Category properties (\p{L}, \P{Nd}, \d, \pN...), alone
// or in a class, -> classes that also hold (or, via a lookahead, leave out) the code points of
// GcTable() whose category differs in its Unicode version.
[[nodiscard]] absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view pattern,
                                                                    bool update_categories = true);

// True when `text` (UTF-8) has a code point of GcTable(): only then can a pattern with updated
// categories match differently from PCRE2's own tables.
[[nodiscard]] bool HasGcTableCodePoint(absl::string_view text);

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
  [[nodiscard]] absl::Status ForEachMatch(
      absl::string_view text, absl::FunctionRef<void(size_t start, size_t end)> on_match) const;
  // The same, when the caller knows HasGcTableCodePoint(text) (a false `true` costs only speed).
  [[nodiscard]] absl::Status ForEachMatch(
      absl::string_view text, bool has_gc_table_code_point,
      absl::FunctionRef<void(size_t start, size_t end)> on_match) const;

 private:
  struct Compiled {
    pcre2_code* code = nullptr;
    bool jit = false;
  };
  SplitRegex(Compiled updated, Compiled plain) : updated_(updated), plain_(plain) {}
  // The pattern with updated categories, and (when that differs) without: the plain one is as
  // fast as PCRE2 gets, the updated one checks up to a few hundred more ranges per character
  // that fails a class, so it only runs on text with a code point of GcTable(), where the two
  // can differ.
  Compiled updated_;
  Compiled plain_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_SPLIT_REGEX_H_
