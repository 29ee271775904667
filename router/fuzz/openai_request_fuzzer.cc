// libFuzzer target: an OpenAI request body, whole, through the code the router runs on it
// before routing: ParseOpenAiRequest (JSON, types, ranges) and then PromptEncoder (the chat
// template over the messages and tools, the tokenizer over text). Must end in a request or a
// clear INVALID_ARGUMENT, never a crash, a hang or another status. The first byte picks the
// endpoint (even: /v1/chat/completions, odd: /v1/completions).
//
//   DSV3_FUZZ_TOKENIZER=<dir with tokenizer.json + tokenizer_config.json> \
//     openai_request_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/openai_request

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "router/openai_request.h"
#include "router/prompt_encoder.h"
#include "tokenizer/tokenizer.h"

namespace {

dsv3::router::PromptEncoder* encoder = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("DSV3_FUZZ_TOKENIZER");
  std::unique_ptr<dsv3::tokenizer::Tokenizer> tokenizer;
  if (dir != nullptr) {
    auto loaded = dsv3::tokenizer::Tokenizer::Load(dir);
    if (!loaded.ok()) {
      std::fprintf(stderr, "DSV3_FUZZ_TOKENIZER=%s: %s\n", dir,
                   std::string(loaded.status().message()).c_str());
      std::abort();
    }
    tokenizer = std::move(*loaded);
  } else {
    std::fprintf(stderr, "no DSV3_FUZZ_TOKENIZER: fuzzing the request parser alone\n");
  }
  encoder = new dsv3::router::PromptEncoder(std::move(tokenizer));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto endpoint = data[0] % 2 == 0 ? dsv3::router::OpenAiEndpoint::kChatCompletions
                                         : dsv3::router::OpenAiEndpoint::kCompletions;
  const absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto request = dsv3::router::ParseOpenAiRequest(endpoint, body);
  if (!request.ok()) {
    if (request.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  std::string rendered;
  auto ids = encoder->Ids(request->generate, &rendered);
  if (!ids.ok() && ids.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  return 0;
}
