#include "tokenizer/utf8.h"

#include "absl/strings/str_cat.h"

namespace dsv3::tokenizer {
namespace {

// Valid range of the second byte for a given lead byte (Unicode Table 3-7); later
// continuation bytes are always 0x80..0xBF.
struct LeadInfo {
  int length;  // 0: not a lead byte
  uint8_t lo, hi;
};

LeadInfo Lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes of `s` (starting at a lead byte) that are a valid prefix of a sequence, and
// the sequence's full length.
int ValidPrefix(absl::string_view s, int* full_length) {
  const LeadInfo lead = Lead(static_cast<uint8_t>(s[0]));
  *full_length = lead.length;
  if (lead.length <= 1) return lead.length;
  int n = 1;
  for (; n < lead.length && n < static_cast<int>(s.size()); ++n) {
    const uint8_t b = static_cast<uint8_t>(s[n]);
    const uint8_t lo = n == 1 ? lead.lo : 0x80, hi = n == 1 ? lead.hi : 0xBF;
    if (b < lo || b > hi) break;
  }
  return n;
}

}  // namespace

int DecodeUtf8(absl::string_view s, uint32_t* cp) {
  if (s.empty()) return 0;
  const uint8_t b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int full = 0;
  const int n = ValidPrefix(s, &full);
  if (full == 0 || n < full) return 0;
  uint32_t c = b0 & (0x7F >> full);
  for (int i = 1; i < full; ++i) c = (c << 6) | (static_cast<uint8_t>(s[i]) & 0x3F);
  *cp = c;
  return full;
}

absl::Status ValidateUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t size = text.size();
  while (i < size) {
    // Fast path over ASCII, 8 bytes at a time.
    while (i + 8 <= size) {
      uint64_t w;
      __builtin_memcpy(&w, text.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= size) break;
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    const int n = DecodeUtf8(text.substr(i), &cp);
    if (n == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text is not valid UTF-8: ill-formed sequence at byte offset ", i, " (byte 0x",
          absl::Hex(static_cast<uint8_t>(text[i]), absl::kZeroPad2), ")"));
    }
    i += n;
  }
  return absl::OkStatus();
}

int IncompletePrefixLength(absl::string_view s) {
  if (s.empty()) return 0;
  int full = 0;
  const int n = ValidPrefix(s, &full);
  if (full <= 1 || n >= full || n < static_cast<int>(s.size())) return 0;
  return n;
}

size_t IncompleteTailLength(absl::string_view bytes) {
  // A lead byte can never be a continuation, so a decoder is at a fresh state when it reaches
  // one: the held-back tail starts at the last lead byte within the final 3 bytes.
  const size_t size = bytes.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    const uint8_t b = static_cast<uint8_t>(bytes[size - back]);
    if (b >= 0x80 && b < 0xC0) continue;  // continuation byte
    return static_cast<size_t>(IncompletePrefixLength(bytes.substr(size - back)));
  }
  return 0;
}

void AppendUtf8Lossy(absl::string_view bytes, std::string* out) {
  size_t i = 0;
  const size_t size = bytes.size();
  while (i < size) {
    size_t start = i;
    while (i < size && static_cast<uint8_t>(bytes[i]) < 0x80) ++i;
    while (i < size) {
      uint32_t cp;
      const int n = DecodeUtf8(bytes.substr(i), &cp);
      if (n == 0) break;
      i += n;
    }
    out->append(bytes.data() + start, i - start);
    if (i >= size) break;
    // Ill-formed: the maximal subpart is the valid prefix (at least one byte).
    int full = 0;
    const int n = ValidPrefix(bytes.substr(i), &full);
    i += n > 0 ? n : 1;
    out->append("\xEF\xBF\xBD");
  }
}

void AppendCodePoint(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace dsv3::tokenizer
