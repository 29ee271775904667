#ifndef DSV3_ROUTER_PROMPT_ENCODER_H_
#define DSV3_ROUTER_PROMPT_ENCODER_H_

// What a request's prompt becomes before it is routed: token ids as given; text through the
// tokenizer (BOS as its config says); chat messages and tools through the model's chat
// template (which writes BOS itself), then the tokenizer. The router's one place for it, and
// what the OpenAI request fuzzer drives (router/fuzz/). Thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dsv3/v1/inference.pb.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::router {

// Most tool definitions a chat request may carry.
inline constexpr int kMaxTools = 128;

class PromptEncoder {
 public:
  // `tokenizer` may be null: prompts are then token ids only. The chat template is the
  // tokenizer config's (none: chat prompts are refused).
  explicit PromptEncoder(std::unique_ptr<tokenizer::Tokenizer> tokenizer);

  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_.get(); }

  // The request's prompt as token ids; `rendered` (optional) gets a chat prompt's text.
  absl::StatusOr<std::vector<int32_t>> Ids(const v1::GenerateRequest& request,
                                           std::string* rendered) const;
  // A chat prompt through the template (roles, tool calls and tools checked first).
  absl::StatusOr<std::string> RenderChat(const v1::ChatPrompt& chat) const;

 private:
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<tokenizer::ChatTemplate> chat_template_;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_PROMPT_ENCODER_H_
