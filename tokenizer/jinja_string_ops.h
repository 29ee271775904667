#ifndef DSV3_TOKENIZER_JINJA_STRING_OPS_H_
#define DSV3_TOKENIZER_JINJA_STRING_OPS_H_

// String operations of the Jinja interpreter (Python str methods as @huggingface/jinja
// implements them). Internal to the interpreter: errors throw jinja::JinjaError.

#include <cstdint>
#include <string>

#include "tokenizer/jinja_value.h"

namespace dsv3::tokenizer::jinja {

bool IsJsSpace(char c);
// strip/lstrip/rstrip: whitespace, or any of `*chars` when `chars` is not null.
std::string Strip(const std::string& s, const std::string* chars, bool left, bool right);
std::string Replace(std::string s, const std::string& from, const std::string& to);
// str.split(sep=None, maxsplit=-1): `sep` null splits on whitespace runs.
Json Split(const std::string& s, const std::string* sep, int64_t max);

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_STRING_OPS_H_
