#ifndef DSV3_TOKENIZER_BYTE_LEVEL_H_
#define DSV3_TOKENIZER_BYTE_LEVEL_H_

// The GPT-2 byte-level alphabet: every byte 0..255 is shown as one printable code point
// (printable Latin-1 bytes as themselves, the rest as U+0100 onwards in byte order). Vocab
// and merges of byte-level BPE tokenizers are spelled in this alphabet.

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace dsv3::tokenizer {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();

  // Code point that stands for `byte`.
  uint32_t CodePoint(uint8_t byte) const { return byte_to_cp_[byte]; }
  // Byte that `cp` stands for, or -1 when `cp` is not in the alphabet.
  int Byte(uint32_t cp) const { return cp < cp_to_byte_.size() ? cp_to_byte_[cp] : -1; }

  // Spells raw bytes in the alphabet (UTF-8 of the mapped code points).
  std::string Encode(absl::string_view bytes) const;
  // Maps a token spelled in the alphabet back to bytes; false when a character of `token` is
  // not in the alphabet (then `out` is unspecified).
  bool Decode(absl::string_view token, std::string* out) const;

 private:
  ByteLevelAlphabet();
  std::array<uint32_t, 256> byte_to_cp_;
  std::array<int16_t, 324> cp_to_byte_;  // the alphabet tops out at U+0143
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_BYTE_LEVEL_H_
