#ifndef DSV3_TOKENIZER_PRE_TOKENIZER_H_
#define DSV3_TOKENIZER_PRE_TOKENIZER_H_

// The pre-tokenizer of a tokenizer.json: splits text (one section between added tokens) into
// the words BPE sees. Implemented: Sequence, Split (Regex or String pattern; behaviours
// Isolated and Removed; invert), and a final ByteLevel (add_prefix_space false; use_regex
// adds the GPT-2 split). Anything else is UNIMPLEMENTED at load time.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tokenizer/split_regex.h"

namespace dsv3::tokenizer {

class PreTokenizer {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(
      const nlohmann::json& config);

  // Appends the words of `text` (views into it, in order, non-empty) to `words`.
  [[nodiscard]] absl::Status Split(absl::string_view text,
                                   std::vector<absl::string_view>* words) const;

 private:
  enum class Behavior { kIsolated, kRemoved };
  struct Stage {
    std::unique_ptr<SplitRegex> regex;
    Behavior behavior;
    bool invert;
  };
  PreTokenizer() = default;
  absl::Status AddConfig(const nlohmann::json& config, bool* saw_byte_level);
  absl::Status AddSplit(absl::string_view pattern, bool literal, Behavior behavior, bool invert);
  absl::Status RunStage(const Stage& stage, const std::vector<absl::string_view>& in,
                        bool has_gc_table_code_point, std::vector<absl::string_view>* out) const;

  std::vector<Stage> stages_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_PRE_TOKENIZER_H_
