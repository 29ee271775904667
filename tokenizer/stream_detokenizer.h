#ifndef DSV3_TOKENIZER_STREAM_DETOKENIZER_H_
#define DSV3_TOKENIZER_STREAM_DETOKENIZER_H_

// Incremental detokenization for streaming: feed generated ids one at a time, get back the
// text that is now final. Bytes of a UTF-8 character split across tokens are held back until
// the character is complete, so a delta never carries a broken sequence; the concatenation of
// all deltas plus Finish() equals Tokenizer::Decode of all ids (ill-formed bytes become U+FFFD
// exactly where Decode puts them). Byte-level BPE has no space clean-up, so a delta never
// depends on later tokens beyond an unfinished character. One instance per stream; not
// thread-safe; the Tokenizer must outlive it.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::tokenizer {

class StreamDetokenizer {
 public:
  explicit StreamDetokenizer(const Tokenizer& tokenizer, const DecodeOptions& options = {})
      : tokenizer_(tokenizer), options_(options) {}

  // Adds one token and returns the newly completed text (often empty for partial characters,
  // never a partial character). INVALID_ARGUMENT for an unknown id (the stream is unchanged).
  [[nodiscard]] absl::StatusOr<std::string> Add(int32_t id);

  // Ends the stream: returns what was held back (an unfinished character becomes U+FFFD, as
  // in a full decode) and resets for reuse.
  std::string Finish();

  // Bytes held back waiting for the rest of a character (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  std::string pending_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_STREAM_DETOKENIZER_H_
