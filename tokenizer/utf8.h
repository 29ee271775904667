#ifndef DSV3_TOKENIZER_UTF8_H_
#define DSV3_TOKENIZER_UTF8_H_

// UTF-8 helpers shared by the tokenizer: strict validation (for prompts), lossy conversion
// with the WHATWG / Rust `from_utf8_lossy` policy (one U+FFFD per maximal invalid subpart,
// what Hugging Face decode produces for byte sequences that are not UTF-8), and the
// "incomplete tail" test the streaming detokenizer needs.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dsv3::tokenizer {

// OK when `text` is well-formed UTF-8; otherwise INVALID_ARGUMENT naming the byte offset of
// the first byte of the first ill-formed sequence.
[[nodiscard]] absl::Status ValidateUtf8(absl::string_view text);

// Returns the length of the well-formed sequence starting at `s[0]` (1..4), or 0 when the
// bytes there do not start a well-formed, complete sequence. `*cp` receives the code point.
int DecodeUtf8(absl::string_view s, uint32_t* cp);

// Length of the maximal prefix of `s` that is a valid beginning of a UTF-8 sequence but not
// a complete one (0 when `s[0]` is not a lead byte or `s` is already complete or invalid).
int IncompletePrefixLength(absl::string_view s);

// Number of trailing bytes of `bytes` that form a valid but incomplete UTF-8 sequence (0..3):
// the bytes a streaming decoder must hold back until more arrive.
size_t IncompleteTailLength(absl::string_view bytes);

// Appends `bytes` to `out`, replacing each maximal ill-formed subpart with U+FFFD.
void AppendUtf8Lossy(absl::string_view bytes, std::string* out);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendCodePoint(uint32_t cp, std::string* out);

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_UTF8_H_
