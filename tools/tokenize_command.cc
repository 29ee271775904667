// `dsv3 tokenize --tokenizer DIR`: JSON lines on stdin, one {"ids": [...]} line out per line in.
//   {"text": "...", "add_special_tokens": true|false}   (default true: BOS when add_bos_token)
//   {"messages": [...], "add_generation_prompt": true, "tools": [...]}  (chat template, then
//                                                         the ids of the rendered prompt)
// `dsv3 detokenize --tokenizer DIR`: {"ids": [...]} lines in, {"text": "..."} lines out.
// A line that fails gives {"error": "..."} and the command exits 1 after the last line.

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tools/command_registry.h"

ABSL_FLAG(std::string, tokenizer, "",
          "model or tokenizer directory holding tokenizer.json (+ tokenizer_config.json)");
ABSL_FLAG(bool, skip_special_tokens, false,
          "detokenize: drop special tokens (a line's own \"skip_special_tokens\" wins)");

namespace dsv3::tools {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizer() {
  const std::string dir = absl::GetFlag(FLAGS_tokenizer);
  if (dir.empty()) return UsageError("--tokenizer DIR is required");
  return tokenizer::Tokenizer::Load(dir);
}

// After every line was answered: an error when some lines were answered with one.
absl::Status LinesFailed(int failed) {
  if (failed == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(failed, " line(s) answered with an error (see their \"error\")"));
}

void PrintLine(const Json& j) {
  const std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

absl::StatusOr<std::vector<int32_t>> TokenizeLine(const tokenizer::Tokenizer& tok,
                                                  const tokenizer::ChatTemplate* chat,
                                                  const absl::Status& chat_status, const Json& in) {
  if (in.contains("messages")) {
    if (chat == nullptr) return chat_status;
    tokenizer::ChatTemplateOptions options;
    options.add_generation_prompt = in.value("add_generation_prompt", false);
    if (in.contains("tools")) options.tools = in["tools"];
    DSV3_ASSIGN_OR_RETURN(std::string prompt, chat->Render(in["messages"], options));
    // The template writes BOS itself (as transformers' apply_chat_template).
    return tok.Encode(prompt, {.add_special_tokens = false});
  }
  if (!in.contains("text") || !in["text"].is_string()) {
    return absl::InvalidArgumentError("expected {\"text\": \"...\"} or {\"messages\": [...]}");
  }
  return tok.Encode(in["text"].get_ref<const std::string&>(),
                    {.add_special_tokens = in.value("add_special_tokens", true)});
}

absl::Status RunTokenize(const std::vector<std::string>& /*args*/) {
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tok, LoadTokenizer());
  absl::StatusOr<std::unique_ptr<tokenizer::ChatTemplate>> chat =
      tokenizer::ChatTemplate::FromConfig(tok->config());
  int failed = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<std::vector<int32_t>> ids;
    try {
      const Json in = Json::parse(line);
      ids = TokenizeLine(*tok, chat.ok() ? chat->get() : nullptr, chat.status(), in);
    } catch (const Json::exception& e) {
      ids = absl::InvalidArgumentError(std::string("bad JSON line: ") + e.what());
    }
    if (!ids.ok()) {
      PrintLine({{"error", ids.status().ToString()}});
      ++failed;
      continue;
    }
    PrintLine({{"ids", *ids}});
  }
  return LinesFailed(failed);
}

absl::Status RunDetokenize(const std::vector<std::string>& /*args*/) {
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tok, LoadTokenizer());
  int failed = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<std::string> text;
    try {
      const Json in = Json::parse(line);
      const bool skip = in.value("skip_special_tokens", absl::GetFlag(FLAGS_skip_special_tokens));
      text = tok->Decode(in.at("ids").get<std::vector<int32_t>>(), {.skip_special_tokens = skip});
    } catch (const Json::exception& e) {
      text = absl::InvalidArgumentError(std::string("expected {\"ids\": [...]}: ") + e.what());
    }
    if (!text.ok()) {
      PrintLine({{"error", text.status().ToString()}});
      ++failed;
      continue;
    }
    PrintLine({{"text", *text}});
  }
  return LinesFailed(failed);
}

}  // namespace
}  // namespace dsv3::tools

DSV3_REGISTER_COMMAND(tokenize, "tokenize",
                      "JSON lines {\"text\"} or {\"messages\"} on stdin -> {\"ids\"} lines",
                      dsv3::tools::RunTokenize, {"tokenize", {"tokenizer"}});
DSV3_REGISTER_COMMAND(detokenize, "detokenize", "JSON lines {\"ids\"} on stdin -> {\"text\"} lines",
                      dsv3::tools::RunDetokenize,
                      {"detokenize", {"tokenizer", "skip_special_tokens"}});
