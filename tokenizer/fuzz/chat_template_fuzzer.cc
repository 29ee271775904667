// libFuzzer target: the model's chat template (DeepSeek-V3's, from tokenizer_config.json)
// rendered over arbitrary JSON: the input is {"messages": ..., "tools": ...,
// "add_generation_prompt": ...} with anything in the fields, beyond what the router's own
// conversion produces (tokenizer/chat_template.h promises an INVALID_ARGUMENT for what the
// template cannot render, never a crash or a wrong prompt).
//
//   DSV3_FUZZ_TOKENIZER=<dir with tokenizer_config.json> \
//     chat_template_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/chat_template

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer_config.h"

namespace {

std::unique_ptr<dsv3::tokenizer::ChatTemplate> chat_template;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("DSV3_FUZZ_TOKENIZER");
  if (dir == nullptr) {
    std::fprintf(stderr, "set DSV3_FUZZ_TOKENIZER to a directory with tokenizer_config.json\n");
    std::abort();
  }
  std::ifstream in(std::string(dir) + "/tokenizer_config.json");
  std::stringstream text;
  text << in.rdbuf();
  auto config = dsv3::tokenizer::ParseTokenizerConfig(text.str());
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    std::abort();
  }
  auto loaded = dsv3::tokenizer::ChatTemplate::FromConfig(*config);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    std::abort();
  }
  chat_template = std::move(*loaded);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto input =
      nlohmann::ordered_json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (input.is_discarded() || !input.is_object()) return 0;
  dsv3::tokenizer::ChatTemplateOptions options;
  if (input.contains("tools")) options.tools = input["tools"];
  if (input.contains("add_generation_prompt") && input["add_generation_prompt"].is_boolean()) {
    options.add_generation_prompt = input["add_generation_prompt"].get<bool>();
  }
  const nlohmann::ordered_json messages =
      input.contains("messages") ? input["messages"] : nlohmann::ordered_json::array();
  auto rendered = chat_template->Render(messages, options);
  if (!rendered.ok() && rendered.status().code() != absl::StatusCode::kInvalidArgument) {
    __builtin_trap();
  }
  return 0;
}
