#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* const alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  cp_to_byte_.fill(-1);
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    byte_to_cp_[b] = printable ? static_cast<uint32_t>(b) : next++;
    cp_to_byte_[byte_to_cp_[b]] = static_cast<int16_t>(b);
  }
}

std::string ByteLevelAlphabet::Encode(absl::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) AppendCodePoint(byte_to_cp_[static_cast<uint8_t>(c)], &out);
  return out;
}

bool ByteLevelAlphabet::Decode(absl::string_view token, std::string* out) const {
  size_t i = 0;
  while (i < token.size()) {
    uint32_t cp;
    const int n = DecodeUtf8(token.substr(i), &cp);
    if (n == 0) return false;
    const int b = Byte(cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
    i += n;
  }
  return true;
}

}  // namespace dsv3::tokenizer
