#include "tokenizer/jinja_string_ops.h"

#include "tokenizer/jinja_ast.h"

namespace dsv3::tokenizer::jinja {

bool IsJsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string Strip(const std::string& s, const std::string* chars, bool left, bool right) {
  auto strip = [&](char c) { return chars ? chars->find(c) != std::string::npos : IsJsSpace(c); };
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e && strip(s[b])) ++b;
  }
  if (right) {
    while (e > b && strip(s[e - 1])) --e;
  }
  return s.substr(b, e - b);
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  if (from.empty())
    throw JinjaError{"chat template: replace() of an empty string is not supported"};
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) {
    s.replace(p, from.size(), to);
  }
  return s;
}

Json Split(const std::string& s, const std::string* sep, int64_t max) {
  Json parts = Json::array();
  if (sep == nullptr) {
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsJsSpace(s[i])) ++i;
      if (i >= s.size()) break;
      if (max == 0) {
        parts.push_back(Strip(s.substr(i), nullptr, false, true));
        break;
      }
      size_t j = i;
      while (j < s.size() && !IsJsSpace(s[j])) ++j;
      parts.push_back(s.substr(i, j - i));
      if (max > 0) --max;
      i = j;
    }
    return parts;
  }
  if (sep->empty()) throw JinjaError{"chat template: split() separator is empty"};
  size_t start = 0, p;
  while (max != 0 && (p = s.find(*sep, start)) != std::string::npos) {
    parts.push_back(s.substr(start, p - start));
    start = p + sep->size();
    if (max > 0) --max;
  }
  parts.push_back(s.substr(start));
  return parts;
}

}  // namespace dsv3::tokenizer::jinja
