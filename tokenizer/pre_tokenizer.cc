#include "tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::tokenizer {
namespace {

// The split ByteLevel(use_regex=true) applies before mapping bytes (GPT-2's pattern).
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const nlohmann::json& config) {
  auto pre = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  bool saw_byte_level = false;
  try {
    DSV3_RETURN_IF_ERROR(pre->AddConfig(config, &saw_byte_level));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: pre_tokenizer: ", e.what()));
  }
  if (!saw_byte_level) {
    return absl::UnimplementedError(
        "tokenizer.json: the pre_tokenizer has no ByteLevel step; only byte-level BPE "
        "tokenizers are supported");
  }
  return pre;
}

absl::Status PreTokenizer::AddConfig(const nlohmann::json& config, bool* saw_byte_level) {
  if (config.is_null()) return absl::OkStatus();
  const std::string type = config.at("type").get<std::string>();
  if (*saw_byte_level) {
    return absl::UnimplementedError(absl::StrCat("tokenizer.json: pre_tokenizer step \"", type,
                                                 "\" after ByteLevel is not supported"));
  }
  if (type == "Sequence") {
    for (const auto& step : config.at("pretokenizers")) {
      DSV3_RETURN_IF_ERROR(AddConfig(step, saw_byte_level));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    const nlohmann::json& pattern = config.at("pattern");
    const std::string behavior = config.at("behavior").get<std::string>();
    Behavior b;
    if (behavior == "Isolated") {
      b = Behavior::kIsolated;
    } else if (behavior == "Removed") {
      b = Behavior::kRemoved;
    } else {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json: Split behavior \"", behavior, "\" is not supported"));
    }
    const bool invert = config.value("invert", false);
    if (pattern.contains("Regex")) {
      return AddSplit(pattern["Regex"].get<std::string>(), /*literal=*/false, b, invert);
    }
    if (pattern.contains("String")) {
      return AddSplit(pattern["String"].get<std::string>(), /*literal=*/true, b, invert);
    }
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: Split pattern ", pattern.dump(),
                                                   " is neither Regex nor String"));
  }
  if (type == "ByteLevel") {
    if (config.value("add_prefix_space", false)) {
      return absl::UnimplementedError(
          "tokenizer.json: ByteLevel pre_tokenizer with add_prefix_space=true is not supported");
    }
    *saw_byte_level = true;
    if (config.value("use_regex", true)) {
      return AddSplit(kGpt2Pattern, /*literal=*/false, Behavior::kIsolated, false);
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: pre_tokenizer type \"", type, "\" is not supported"));
}

absl::Status PreTokenizer::AddSplit(absl::string_view pattern, bool literal, Behavior behavior,
                                    bool invert) {
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<SplitRegex> regex, SplitRegex::Create(pattern, literal));
  stages_.push_back(Stage{std::move(regex), behavior, invert});
  return absl::OkStatus();
}

absl::Status PreTokenizer::RunStage(const Stage& stage, const std::vector<absl::string_view>& in,
                                    bool has_gc_table_code_point,
                                    std::vector<absl::string_view>* out) const {
  // Isolated keeps matches and gaps as separate words; Removed keeps the gaps (or, inverted,
  // the matches). Isolated is the same inverted or not.
  const bool keep_gaps = stage.behavior == Behavior::kIsolated || !stage.invert;
  const bool keep_matches = stage.behavior == Behavior::kIsolated || stage.invert;
  for (const absl::string_view piece : in) {
    // Split scanned the whole text; only when it has such code points are the pieces scanned
    // one by one, so that those without any still get the plain (faster) pattern.
    const bool has_new = has_gc_table_code_point && (in.size() == 1 || HasGcTableCodePoint(piece));
    size_t prev = 0;
    absl::Status status = stage.regex->ForEachMatch(piece, has_new, [&](size_t start, size_t end) {
      if (start > prev && keep_gaps) out->push_back(piece.substr(prev, start - prev));
      if (keep_matches) out->push_back(piece.substr(start, end - start));
      prev = end;
    });
    if (!status.ok()) return status;
    if (prev < piece.size() && keep_gaps) out->push_back(piece.substr(prev));
  }
  return absl::OkStatus();
}

absl::Status PreTokenizer::Split(absl::string_view text,
                                 std::vector<absl::string_view>* words) const {
  if (text.empty()) return absl::OkStatus();
  if (stages_.empty()) {
    words->push_back(text);
    return absl::OkStatus();
  }
  const bool has_gc_table_code_point = HasGcTableCodePoint(text);
  thread_local std::vector<absl::string_view> a, b;
  a.clear();
  a.push_back(text);
  for (size_t i = 0; i < stages_.size(); ++i) {
    const bool last = i + 1 == stages_.size();
    std::vector<absl::string_view>* out = last ? words : &b;
    if (!last) b.clear();
    DSV3_RETURN_IF_ERROR(RunStage(stages_[i], a, has_gc_table_code_point, out));
    if (!last) std::swap(a, b);
  }
  return absl::OkStatus();
}

}  // namespace dsv3::tokenizer
