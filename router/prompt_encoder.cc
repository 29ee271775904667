#include "router/prompt_encoder.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace dsv3::router {

PromptEncoder::PromptEncoder(std::unique_ptr<tokenizer::Tokenizer> tokenizer)
    : tokenizer_(std::move(tokenizer)) {
  if (tokenizer_ != nullptr) {
    auto chat = tokenizer::ChatTemplate::FromConfig(tokenizer_->config());
    if (chat.ok()) {
      chat_template_ = std::move(*chat);
    } else {
      DSV3_LOG(WARNING) << "no chat template: " << chat.status();
    }
  }
}

absl::StatusOr<std::string> PromptEncoder::RenderChat(const v1::ChatPrompt& chat) const {
  if (chat_template_ == nullptr) {
    return absl::InvalidArgumentError("this model has no chat template; send text or token ids");
  }
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (const auto& m : chat.messages()) {
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" &&
        m.role() != "tool") {
      return absl::InvalidArgumentError(absl::StrCat("unknown message role '", m.role(), "'"));
    }
    nlohmann::ordered_json j = {{"role", m.role()}, {"content", m.content()}};
    // A turn that only calls tools has no content (templates test for none, as OpenAI's null).
    if (m.role() == "assistant" && m.content().empty() && m.tool_calls_size() > 0) {
      j["content"] = nullptr;
    }
    if (!m.name().empty()) j["name"] = m.name();
    if (!m.tool_call_id().empty()) j["tool_call_id"] = m.tool_call_id();
    if (m.tool_calls_size() > 0) {
      j["tool_calls"] = nlohmann::ordered_json::array();
      for (const auto& c : m.tool_calls()) {
        j["tool_calls"].push_back(
            {{"id", c.id()},
             {"type", c.type().empty() ? "function" : c.type()},
             {"function", {{"name", c.function_name()}, {"arguments", c.function_arguments()}}}});
      }
    }
    messages.push_back(std::move(j));
  }
  if (messages.empty()) return absl::InvalidArgumentError("messages must not be empty");
  tokenizer::ChatTemplateOptions options;
  options.add_generation_prompt = !chat.has_add_generation_prompt() || chat.add_generation_prompt();
  if (chat.tools_size() > kMaxTools) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxTools, " tools"));
  }
  if (chat.tools_size() > 0) {
    options.tools = nlohmann::ordered_json::array();
    for (const auto& t : chat.tools()) {
      nlohmann::ordered_json params = nlohmann::ordered_json::parse(
          t.parameters_json().empty() ? "{}" : t.parameters_json(), nullptr, false);
      if (params.is_discarded()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tool '", t.name(), "': parameters are not valid JSON"));
      }
      options.tools.push_back(
          {{"type", "function"},
           {"function",
            {{"name", t.name()}, {"description", t.description()}, {"parameters", params}}}});
    }
  }
  return chat_template_->Render(messages, options);
}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::Ids(const v1::GenerateRequest& request,
                                                        std::string* rendered) const {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kTokenIds:
      return std::vector<int32_t>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    case v1::GenerateRequest::kText: {
      if (tokenizer_ == nullptr) {
        return absl::InvalidArgumentError(
            "this model is served without a tokenizer: send token ids");
      }
      return tokenizer_->Encode(request.text(), {.add_special_tokens = true});
    }
    case v1::GenerateRequest::kChat: {
      if (tokenizer_ == nullptr) {
        return absl::InvalidArgumentError(
            "this model is served without a tokenizer: send token ids");
      }
      DSV3_ASSIGN_OR_RETURN(std::string text, RenderChat(request.chat()));
      if (rendered != nullptr) *rendered = text;
      // The template writes BOS itself.
      return tokenizer_->Encode(text, {.add_special_tokens = false});
    }
    default:
      return absl::InvalidArgumentError("the request has no prompt (text, chat or token_ids)");
  }
}

}  // namespace dsv3::router
