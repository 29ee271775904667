#ifndef DSV3_TOKENIZER_JINJA_PARSER_H_
#define DSV3_TOKENIZER_JINJA_PARSER_H_

// Parses the Jinja subset chat templates use:
//   {{ expr }}; {% if %}/{% elif %}/{% else %}/{% endif %}; {% for a[, b] in expr [if cond] %}
//   ... [{% else %}] {% endfor %}; {% set name = expr %}, {% set ns.attr = expr %};
//   {% macro name(params[=default]) %}...{% endmacro %}; {% break %}, {% continue %}.
// Expressions: literals (strings, numbers, true/false/none in either case, lists, tuples,
// dicts), names, .attr, [index], [a:b:c], calls with keyword arguments, filters `|f(args)`,
// tests `is [not] t`, not/and/or, comparisons, in/not in, + - * / // % ~ **, `a if c else b`.
// Anything else is INVALID_ARGUMENT naming the offset, at parse time.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/jinja_ast.h"

namespace dsv3::tokenizer::jinja {

[[nodiscard]] absl::StatusOr<Body> Parse(absl::string_view source);

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_PARSER_H_
