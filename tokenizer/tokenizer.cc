#include "tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return buffer.str();
}

absl::Status CheckDecoder(const nlohmann::json& decoder) {
  const std::string type =
      decoder.is_object() ? decoder.value("type", std::string()) : std::string("null");
  if (type == "ByteLevel") return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: decoder \"", type, "\" is not supported (only ByteLevel)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  DSV3_ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(dir + "/tokenizer.json"));
  std::string config_json;
  if (std::ifstream(dir + "/tokenizer_config.json").good()) {
    DSV3_ASSIGN_OR_RETURN(config_json, ReadFile(dir + "/tokenizer_config.json"));
  }
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                        FromJson(tokenizer_json, config_json));
  if (tokenizer->config_.chat_template.empty() &&
      std::ifstream(dir + "/chat_template.jinja").good()) {
    DSV3_ASSIGN_OR_RETURN(tokenizer->config_.chat_template, ReadFile(dir + "/chat_template.jinja"));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json) {
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  if (!tokenizer_config_json.empty()) {
    DSV3_ASSIGN_OR_RETURN(tokenizer->config_, ParseTokenizerConfig(tokenizer_config_json));
  }
  if (tokenizer->config_.clean_up_tokenization_spaces) {
    return absl::UnimplementedError(
        "tokenizer_config.json: clean_up_tokenization_spaces=true is not supported");
  }
  DSV3_RETURN_IF_ERROR(tokenizer->Init(tokenizer_json));
  return tokenizer;
}

absl::Status Tokenizer::Init(absl::string_view tokenizer_json) {
  nlohmann::json root = nlohmann::json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  }
  if (!root.contains("model")) return absl::InvalidArgumentError("tokenizer.json has no model");
  DSV3_ASSIGN_OR_RETURN(bpe_, BpeModel::FromJson(root["model"]));
  if (absl::Status s = CheckIdentityNormalizer(root.value("normalizer", nlohmann::json()));
      !s.ok()) {
    return s;
  }
  DSV3_ASSIGN_OR_RETURN(pre_tokenizer_,
                        PreTokenizer::FromJson(root.value("pre_tokenizer", nlohmann::json())));
  DSV3_RETURN_IF_ERROR(CheckDecoder(root.value("decoder", nlohmann::json())));
  DSV3_ASSIGN_OR_RETURN(added_,
                        AddedVocabulary::FromJson(root.value("added_tokens", nlohmann::json())));

  // Decode table: added tokens win over the model vocab; a token whose characters are all in
  // the byte-level alphabet decodes to those bytes, any other to its own UTF-8 (what the
  // `tokenizers` ByteLevel decoder does).
  int32_t limit = bpe_->IdLimit();
  for (const AddedToken& t : added_.tokens()) limit = std::max(limit, t.id + 1);
  id_bytes_.assign(limit, std::string());
  id_flags_.assign(limit, 0);
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  auto set_bytes = [&](int32_t id, absl::string_view token) {
    std::string bytes;
    if (!alphabet.Decode(token, &bytes)) bytes.assign(token.data(), token.size());
    id_bytes_[id] = std::move(bytes);
    id_flags_[id] |= kValid;
  };
  for (int32_t id = 0; id < bpe_->IdLimit(); ++id) {
    const absl::string_view token = bpe_->IdToToken(id);
    if (!token.empty()) set_bytes(id, token);
  }
  for (const AddedToken& t : added_.tokens()) {
    set_bytes(t.id, t.content);
    if (t.special) id_flags_[t.id] |= kSpecial;
  }

  auto find_id = [&](const std::string& content) -> std::optional<int32_t> {
    if (content.empty()) return std::nullopt;
    return TokenToId(content);
  };
  bos_id_ = find_id(config_.bos_token);
  eos_id_ = find_id(config_.eos_token);
  pad_id_ = find_id(config_.pad_token);
  for (const auto& [name, content, id] : {std::tuple{"bos_token", &config_.bos_token, bos_id_},
                                          std::tuple{"eos_token", &config_.eos_token, eos_id_},
                                          std::tuple{"pad_token", &config_.pad_token, pad_id_}}) {
    if (!content->empty() && !id.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", name, " \"",
                                                     *content, "\" is not in the vocabulary"));
    }
  }
  return InitPostProcessor(root.value("post_processor", nlohmann::json()));
}

absl::Status Tokenizer::InitPostProcessor(const nlohmann::json& post_processor) {
  // `transformers`' LlamaTokenizerFast (DeepSeek-V3's class) rebuilds the post-processor from
  // add_bos_token / add_eos_token; when the config says neither, the tokenizer.json one rules.
  if (config_.add_bos_token.has_value() || config_.add_eos_token.has_value()) {
    if (config_.add_bos_token.value_or(false)) {
      if (!bos_id_)
        return absl::InvalidArgumentError("add_bos_token is set but there is no bos_token");
      prefix_ids_.push_back(*bos_id_);
    }
    if (config_.add_eos_token.value_or(false)) {
      if (!eos_id_)
        return absl::InvalidArgumentError("add_eos_token is set but there is no eos_token");
      suffix_ids_.push_back(*eos_id_);
    }
    return absl::OkStatus();
  }
  if (post_processor.is_null()) return absl::OkStatus();
  try {
    const std::string type = post_processor.at("type").get<std::string>();
    if (type == "ByteLevel") return absl::OkStatus();  // offsets only
    if (type == "Sequence") {
      for (const auto& step : post_processor.at("processors")) {
        DSV3_RETURN_IF_ERROR(InitPostProcessor(step));
      }
      return absl::OkStatus();
    }
    if (type == "TemplateProcessing") {
      bool seen_sequence = false;
      for (const auto& piece : post_processor.at("single")) {
        if (piece.contains("Sequence")) {
          seen_sequence = true;
          continue;
        }
        const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
        for (const auto& id : post_processor.at("special_tokens").at(name).at("ids")) {
          (seen_sequence ? suffix_ids_ : prefix_ids_).push_back(id.get<int32_t>());
        }
      }
      return absl::OkStatus();
    }
    return absl::UnimplementedError(
        absl::StrCat("tokenizer.json: post_processor \"", type, "\" is not supported"));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: post_processor: ", e.what()));
  }
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  DSV3_RETURN_IF_ERROR(EncodeTo(text, options, &ids));
  return ids;
}

absl::Status Tokenizer::EncodeTo(absl::string_view text, const EncodeOptions& options,
                                 std::vector<int32_t>* ids) const {
  DSV3_RETURN_IF_ERROR(ValidateUtf8(text));
  ids->reserve(ids->size() + text.size() / 3 + 4);
  if (options.add_special_tokens) ids->insert(ids->end(), prefix_ids_.begin(), prefix_ids_.end());
  thread_local std::vector<AddedVocabulary::Segment> segments;
  thread_local std::vector<absl::string_view> words;
  segments.clear();
  added_.Split(text, &segments);
  for (const AddedVocabulary::Segment& segment : segments) {
    if (segment.id >= 0) {
      ids->push_back(segment.id);
      continue;
    }
    words.clear();
    DSV3_RETURN_IF_ERROR(pre_tokenizer_->Split(segment.text, &words));
    for (const absl::string_view word : words) bpe_->EncodeWord(word, ids);
  }
  if (options.add_special_tokens) ids->insert(ids->end(), suffix_ids_.begin(), suffix_ids_.end());
  return absl::OkStatus();
}

absl::StatusOr<absl::string_view> Tokenizer::TokenBytes(int32_t id,
                                                        const DecodeOptions& options) const {
  if (id < 0 || id >= IdLimit() || !(id_flags_[id] & kValid)) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is not in the vocabulary"));
  }
  if (options.skip_special_tokens && (id_flags_[id] & kSpecial)) return absl::string_view();
  return absl::string_view(id_bytes_[id]);
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              const DecodeOptions& options) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (const int32_t id : ids) {
    DSV3_ASSIGN_OR_RETURN(absl::string_view b, TokenBytes(id, options));
    bytes.append(b.data(), b.size());
  }
  if (ValidateUtf8(bytes).ok()) return bytes;
  std::string text;
  AppendUtf8Lossy(bytes, &text);
  return text;
}

std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token) const {
  if (const AddedToken* t = added_.FindByContent(token)) return t->id;
  return bpe_->TokenToId(token);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < IdLimit() && (id_flags_[id] & kSpecial);
}

}  // namespace dsv3::tokenizer
