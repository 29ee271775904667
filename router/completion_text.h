#ifndef DSV3_ROUTER_COMPLETION_TEXT_H_
#define DSV3_ROUTER_COMPLETION_TEXT_H_

// The text of one completion as its tokens arrive: incremental detokenization (never a
// broken UTF-8 character) and stop strings, which may span tokens. Text that could still
// turn out to be the start of a stop string is held back until it cannot.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/stream_detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::router {

class CompletionText {
 public:
  // `tokenizer` may be null (a model served on token ids): then there is no text and stop
  // strings never match.
  CompletionText(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop,
                 bool skip_special_tokens);

  struct Delta {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string matched; `text` ends just before it
    std::string matched;   // which one
  };
  absl::StatusOr<Delta> Add(int32_t token);
  // At the end: whatever was held back (nothing after a stop).
  std::string Finish();

 private:
  Delta Release(bool final);

  const tokenizer::Tokenizer* tokenizer_;
  std::unique_ptr<tokenizer::StreamDetokenizer> detokenizer_;
  const std::vector<std::string> stop_;
  size_t hold_ = 0;  // longest stop string - 1
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_COMPLETION_TEXT_H_
