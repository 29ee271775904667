#include "tokenizer/added_vocabulary.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

// Rust's char::is_whitespace: the Unicode White_Space property.
bool IsWhiteSpace(uint32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the whitespace run that ends at `end` (not before `floor`).
size_t SkipWhiteSpaceLeft(absl::string_view text, size_t end, size_t floor) {
  size_t pos = end;
  while (pos > floor) {
    size_t ch = pos - 1;
    while (ch > floor && (static_cast<uint8_t>(text[ch]) & 0xC0) == 0x80) --ch;
    uint32_t cp;
    if (DecodeUtf8(text.substr(ch, pos - ch), &cp) == 0 || !IsWhiteSpace(cp)) break;
    pos = ch;
  }
  return pos;
}

// End of the whitespace run that starts at `start`.
size_t SkipWhiteSpaceRight(absl::string_view text, size_t start) {
  size_t pos = start;
  while (pos < text.size()) {
    uint32_t cp;
    const int n = DecodeUtf8(text.substr(pos), &cp);
    if (n == 0 || !IsWhiteSpace(cp)) break;
    pos += n;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::Insert(absl::string_view key, int32_t token_index) {
  int32_t node = 0;
  for (const char c : key) {
    const uint64_t edge = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
    auto it = edges_.find(edge);
    if (it == edges_.end()) {
      const int32_t child = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      it = edges_.emplace(edge, child).first;
    }
    node = it->second;
  }
  terminal_[node] = token_index;
  first_byte_[static_cast<uint8_t>(key[0])] = true;
}

bool AddedVocabulary::Trie::Find(absl::string_view text, size_t from, size_t* start, size_t* end,
                                 int32_t* token_index) const {
  if (empty()) return false;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[j]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) best = terminal_[node], best_end = j + 1;
    }
    if (best >= 0) {
      *start = i;
      *end = best_end;
      *token_index = best;
      return true;
    }
  }
  return false;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const nlohmann::json& added_tokens) {
  AddedVocabulary vocab;
  if (added_tokens.is_null()) return vocab;
  try {
    for (const auto& t : added_tokens) {
      AddedToken token;
      token.id = t.at("id").get<int32_t>();
      token.content = t.at("content").get<std::string>();
      token.special = t.value("special", false);
      token.lstrip = t.value("lstrip", false);
      token.rstrip = t.value("rstrip", false);
      token.normalized = t.value("normalized", !token.special);
      if (t.value("single_word", false)) {
        return absl::UnimplementedError(
            absl::StrCat("tokenizer.json: added token \"", token.content,
                         "\" has single_word=true, which is not supported"));
      }
      if (token.content.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: added token ", token.id, " is empty"));
      }
      DSV3_RETURN_IF_ERROR(ValidateUtf8(token.content));
      const int32_t index = static_cast<int32_t>(vocab.tokens_.size());
      if (!vocab.by_id_.emplace(token.id, index).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: added token id ", token.id, " repeats"));
      }
      vocab.by_content_.emplace(token.content, index);
      (token.normalized ? vocab.normalized_trie_ : vocab.raw_trie_).Insert(token.content, index);
      vocab.tokens_.push_back(std::move(token));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: added_tokens: ", e.what()));
  }
  return vocab;
}

void AddedVocabulary::Split(absl::string_view text, std::vector<Segment>* out) const {
  SplitPass(raw_trie_, text, out, &normalized_trie_);
}

void AddedVocabulary::SplitPass(const Trie& trie, absl::string_view text, std::vector<Segment>* out,
                                const Trie* next_pass) const {
  auto emit_text = [&](size_t from, size_t to) {
    if (to <= from) return;
    if (next_pass != nullptr) {
      SplitPass(*next_pass, text.substr(from, to - from), out, nullptr);
    } else {
      out->push_back({text.substr(from, to - from), -1});
    }
  };
  size_t pos = 0;     // start of text not yet emitted
  size_t search = 0;  // where to look for the next match
  size_t start, end;
  int32_t index;
  while (trie.Find(text, search, &start, &end, &index)) {
    const AddedToken& token = tokens_[index];
    size_t text_end = start;
    if (token.lstrip) text_end = SkipWhiteSpaceLeft(text, start, pos);
    emit_text(pos, text_end);
    out->push_back({text.substr(start, end - start), token.id});
    if (token.rstrip) end = SkipWhiteSpaceRight(text, end);
    pos = search = end;
  }
  emit_text(pos, text.size());
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(absl::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace dsv3::tokenizer
