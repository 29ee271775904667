#ifndef DSV3_TOKENIZER_CHAT_TEMPLATE_H_
#define DSV3_TOKENIZER_CHAT_TEMPLATE_H_

// A model's chat template (the Jinja source in tokenizer_config.json), parsed once and
// rendered per request with the same output as @huggingface/jinja / `transformers`
// apply_chat_template. The template text itself is interpreted (jinja_*.h), so variants
// (R1, V3.1, ...) work as long as they stay within the supported Jinja subset; anything else
// is an INVALID_ARGUMENT at Create or Render, never a wrong prompt.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/tokenizer_config.h"

namespace dsv3::tokenizer {

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  // OpenAI-style tool definitions (a JSON array), or null for none.
  nlohmann::ordered_json tools = nullptr;
  // More template variables (e.g. {"thinking": true}); override the defaults above.
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // `special_tokens` supplies bos_token/eos_token/pad_token/unk_token variables.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(
      absl::string_view source, const TokenizerConfig& special_tokens);
  // The default template of a tokenizer_config.json; NOT_FOUND when it has none.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromConfig(
      const TokenizerConfig& config);

  // `messages`: an array of {"role", "content", ...} objects (tool_calls etc. as in the
  // OpenAI API). Thread-safe.
  [[nodiscard]] absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                                   const ChatTemplateOptions& options = {}) const;

 private:
  ChatTemplate() = default;
  jinja::Body program_;
  TokenizerConfig special_tokens_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_CHAT_TEMPLATE_H_
