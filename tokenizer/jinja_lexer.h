#ifndef DSV3_TOKENIZER_JINJA_LEXER_H_
#define DSV3_TOKENIZER_JINJA_LEXER_H_

// Tokens of a Jinja template. Before lexing, the source is preprocessed as @huggingface/jinja
// (and `transformers`) do for chat templates: one trailing newline dropped, lstrip_blocks and
// trim_blocks on; `{%-`/`-%}` style markers strip the whitespace next to a tag.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::tokenizer::jinja {

struct Token {
  enum class Kind {
    kText,
    kExprOpen,
    kExprClose,
    kStmtOpen,
    kStmtClose,
    kName,
    kString,
    kInteger,
    kFloat,
    kOperator,
    kEnd
  };
  Kind kind;
  std::string text;  // text, name, decoded string literal, number or operator
  size_t offset;     // in the preprocessed source, for error messages
};

[[nodiscard]] absl::StatusOr<std::vector<Token>> Lex(absl::string_view source);

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_LEXER_H_
