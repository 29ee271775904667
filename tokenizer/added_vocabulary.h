#ifndef DSV3_TOKENIZER_ADDED_VOCABULARY_H_
#define DSV3_TOKENIZER_ADDED_VOCABULARY_H_

// The "added_tokens" of a tokenizer.json: tokens matched verbatim in the text before the
// pre-tokenizer and BPE see it (special tokens such as <｜begin▁of▁sentence｜> and the chat
// markers). Like Hugging Face `tokenizers`, tokens with normalized=false are matched first on
// the raw text, then normalized=true ones on what is left; each pass takes the leftmost match
// and, at one position, the longest. lstrip/rstrip make a match swallow the whitespace to its
// left/right. single_word is not implemented (load fails rather than tokenizing wrongly).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace dsv3::tokenizer {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

class AddedVocabulary {
 public:
  // A run of the input: an added token (`id` >= 0) or plain text to pre-tokenize (`id` -1).
  struct Segment {
    absl::string_view text;
    int32_t id;
  };

  [[nodiscard]] static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens);

  // Splits `text` into segments (appended to `out`, in order; empty text segments omitted).
  void Split(absl::string_view text, std::vector<Segment>* out) const;

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(absl::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over token contents; leftmost-longest search.
  class Trie {
   public:
    void Insert(absl::string_view key, int32_t token_index);
    bool empty() const { return terminal_.size() <= 1; }
    // Finds the leftmost-longest match in `text` at or after `from`.
    bool Find(absl::string_view text, size_t from, size_t* start, size_t* end,
              int32_t* token_index) const;

   private:
    absl::flat_hash_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
    std::vector<int32_t> terminal_{-1};             // node -> token index or -1
    bool first_byte_[256] = {};
  };

  void SplitPass(const Trie& trie, absl::string_view text, std::vector<Segment>* out,
                 const Trie* next_pass) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, int32_t> by_id_;           // id -> index in tokens_
  absl::flat_hash_map<std::string, int32_t> by_content_;  // content -> index in tokens_
  Trie raw_trie_;                                         // normalized == false
  Trie normalized_trie_;                                  // normalized == true
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_ADDED_VOCABULARY_H_
