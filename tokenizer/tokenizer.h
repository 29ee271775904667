#ifndef DSV3_TOKENIZER_TOKENIZER_H_
#define DSV3_TOKENIZER_TOKENIZER_H_

// Text <-> token ids for a Hugging Face `tokenizer.json` byte-level BPE tokenizer (DeepSeek-V3,
// R1, V3.1 ...), giving the ids `transformers` gives. Pipeline: added/special tokens matched in
// the raw text -> (identity) normalizer -> pre-tokenizer splits -> byte-level BPE; BOS/EOS per
// tokenizer_config.json. What is not implemented fails at load time (UNIMPLEMENTED), never
// later in silence. A Tokenizer is immutable after Load and safe to use from many threads.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace dsv3::tokenizer {

struct EncodeOptions {
  // BOS first when add_bos_token (EOS last when add_eos_token), as `transformers` encode does.
  // Special-token text inside the input is matched either way.
  bool add_special_tokens = true;
};

struct DecodeOptions {
  // Drops tokens marked "special" in tokenizer.json (BOS/EOS/pad..., not the chat markers
  // DeepSeek-V3 marks non-special such as <｜User｜>).
  bool skip_special_tokens = false;
};

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (and
  // DIR/chat_template.jinja when the config carries no template).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // From file contents; `tokenizer_config_json` may be empty.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      absl::string_view tokenizer_json, absl::string_view tokenizer_config_json);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // INVALID_ARGUMENT (naming the byte offset) when `text` is not valid UTF-8.
  [[nodiscard]] absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text, const EncodeOptions& options = {}) const;
  // Appends to `ids` (reuse one vector to avoid allocations).
  [[nodiscard]] absl::Status EncodeTo(absl::string_view text, const EncodeOptions& options,
                                      std::vector<int32_t>* ids) const;

  // Byte sequences that are not UTF-8 become U+FFFD (as `transformers` does); INVALID_ARGUMENT
  // for an id outside the vocabulary.
  [[nodiscard]] absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                                   const DecodeOptions& options = {}) const;

  // The raw bytes `id` stands for in a decode (possibly part of a UTF-8 character); empty
  // when it is skipped. INVALID_ARGUMENT for an unknown id.
  [[nodiscard]] absl::StatusOr<absl::string_view> TokenBytes(int32_t id,
                                                             const DecodeOptions& options) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;  // vocab or added token
  bool IsSpecial(int32_t id) const;
  int32_t IdLimit() const { return static_cast<int32_t>(id_bytes_.size()); }

  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }
  const TokenizerConfig& config() const { return config_; }
  const AddedVocabulary& added_vocabulary() const { return added_; }

 private:
  Tokenizer() = default;
  absl::Status Init(absl::string_view tokenizer_json);
  absl::Status InitPostProcessor(const nlohmann::json& post_processor);

  TokenizerConfig config_;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  AddedVocabulary added_;
  std::vector<int32_t> prefix_ids_;  // added by add_special_tokens
  std::vector<int32_t> suffix_ids_;
  std::optional<int32_t> bos_id_, eos_id_, pad_id_;

  // Per id: the bytes it decodes to, whether it exists, whether it is special.
  std::vector<std::string> id_bytes_;
  std::vector<uint8_t> id_flags_;
  static constexpr uint8_t kValid = 1, kSpecial = 2;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_TOKENIZER_H_
