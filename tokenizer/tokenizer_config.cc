#include "tokenizer/tokenizer_config.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace dsv3::tokenizer {
namespace {

// A special token is written either as its content or as an AddedToken object.
absl::StatusOr<std::string> TokenContent(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json: \"", key, "\" is neither a string nor a token"));
}

}  // namespace

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(absl::string_view json_text) {
  nlohmann::json config = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr,
                                                /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json is not a JSON object");
  }
  TokenizerConfig out;
  try {
    if (config.contains("add_bos_token")) out.add_bos_token = config["add_bos_token"].get<bool>();
    if (config.contains("add_eos_token")) out.add_eos_token = config["add_eos_token"].get<bool>();
    out.clean_up_tokenization_spaces = config.value("clean_up_tokenization_spaces", false);
    struct Field {
      const char* key;
      std::string* dest;
    };
    for (const Field& f :
         {Field{"bos_token", &out.bos_token}, Field{"eos_token", &out.eos_token},
          Field{"pad_token", &out.pad_token}, Field{"unk_token", &out.unk_token}}) {
      DSV3_ASSIGN_OR_RETURN(*f.dest, TokenContent(config, f.key));
    }
    const auto it = config.find("chat_template");
    if (it != config.end() && it->is_string()) {
      out.chat_template = it->get<std::string>();
    } else if (it != config.end() && it->is_array()) {
      for (const auto& named : *it) {
        if (named.value("name", std::string()) == "default") {
          out.chat_template = named.at("template").get<std::string>();
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", e.what()));
  }
  return out;
}

}  // namespace dsv3::tokenizer
