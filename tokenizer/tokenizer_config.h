#ifndef DSV3_TOKENIZER_TOKENIZER_CONFIG_H_
#define DSV3_TOKENIZER_TOKENIZER_CONFIG_H_

// What the tokenizer needs from tokenizer_config.json (the `transformers` side of a model's
// tokenizer): whether encode adds BOS/EOS, the special-token strings and the chat template.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::tokenizer {

struct TokenizerConfig {
  // Unset when the file does not say (then the tokenizer.json post-processor decides).
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  // Token contents; empty when unset or null.
  std::string bos_token;
  std::string eos_token;
  std::string pad_token;
  std::string unk_token;
  // The default chat template (Jinja source); empty when there is none.
  std::string chat_template;
  bool clean_up_tokenization_spaces = false;
};

// Parses the text of tokenizer_config.json. `chat_template` may be a string or a list of
// {"name", "template"} (the one named "default" is taken).
[[nodiscard]] absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(absl::string_view json_text);

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_TOKENIZER_CONFIG_H_
