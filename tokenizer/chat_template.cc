#include "tokenizer/chat_template.h"

#include <utility>

#include "common/status_macros.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_parser.h"

namespace dsv3::tokenizer {

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(
    absl::string_view source, const TokenizerConfig& special_tokens) {
  DSV3_ASSIGN_OR_RETURN(jinja::Body program, jinja::Parse(source));
  auto t = std::unique_ptr<ChatTemplate>(new ChatTemplate());
  t->program_ = std::move(program);
  t->special_tokens_ = special_tokens;
  return t;
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromConfig(
    const TokenizerConfig& config) {
  if (config.chat_template.empty()) {
    return absl::NotFoundError("tokenizer_config.json has no chat_template");
  }
  return Create(config.chat_template, config);
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                                 const ChatTemplateOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = options.add_generation_prompt;
  if (!options.tools.is_null()) context["tools"] = options.tools;
  context["bos_token"] = special_tokens_.bos_token;
  context["eos_token"] = special_tokens_.eos_token;
  context["pad_token"] = special_tokens_.pad_token;
  context["unk_token"] = special_tokens_.unk_token;
  for (auto it = options.extra_context.begin(); it != options.extra_context.end(); ++it) {
    context[it.key()] = *it;
  }
  return jinja::Render(program_, context);
}

}  // namespace dsv3::tokenizer
