#ifndef DSV3_TOKENIZER_JINJA_INTERPRETER_H_
#define DSV3_TOKENIZER_JINJA_INTERPRETER_H_

// Runs a parsed Jinja template (jinja_parser.h) over a context of variables. Semantics follow
// @huggingface/jinja, the renderer `transformers.js` uses and the tests compare against.
// Built-ins: namespace(), range(), raise_exception(); filters length/count, trim, tojson,
// string, upper, lower, capitalize, first, last, join, default/d, items, list, replace, int,
// float, abs, safe, reverse; tests defined, undefined, none, string, number, integer, float,
// boolean, true, false, mapping, iterable, sequence, odd, even, equalto/eq; string methods
// strip/lstrip/rstrip/split/startswith/endswith/upper/lower/replace/title/capitalize, mapping
// methods get/items/keys/values; loop.index/index0/revindex/revindex0/first/last/length.

#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/jinja_ast.h"

namespace dsv3::tokenizer::jinja {

// `context`: a JSON object of the template's variables.
[[nodiscard]] absl::StatusOr<std::string> Render(const Body& program, const Json& context);

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_INTERPRETER_H_
