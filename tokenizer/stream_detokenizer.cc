#include "tokenizer/stream_detokenizer.h"

#include <utility>

#include "common/status_macros.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {

absl::StatusOr<std::string> StreamDetokenizer::Add(int32_t id) {
  DSV3_ASSIGN_OR_RETURN(absl::string_view bytes, tokenizer_.TokenBytes(id, options_));
  pending_.append(bytes.data(), bytes.size());
  // A decoder reaching a lead byte is always in its initial state, so cutting before a
  // trailing valid-but-incomplete sequence gives the same text as decoding everything at once.
  const size_t hold = IncompleteTailLength(pending_);
  std::string delta;
  AppendUtf8Lossy(absl::string_view(pending_).substr(0, pending_.size() - hold), &delta);
  pending_.erase(0, pending_.size() - hold);
  return delta;
}

std::string StreamDetokenizer::Finish() {
  std::string tail;
  AppendUtf8Lossy(pending_, &tail);
  pending_.clear();
  return tail;
}

}  // namespace dsv3::tokenizer
