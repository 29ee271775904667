#include "tokenizer/jinja_lexer.h"

#include <regex>

#include "absl/strings/str_cat.h"

namespace dsv3::tokenizer::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Preprocess(absl::string_view source) {
  std::string s(source);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  // lstrip_blocks: spaces/tabs from the start of a line up to a block or comment tag.
  s = std::regex_replace(s, std::regex(R"((^|\n)[ \t]*(\{[#%-]))"), "$1$2");
  // trim_blocks: the first newline after a block or comment tag.
  s = std::regex_replace(s, std::regex(R"(([#%-]\})\n)"), "$1");
  return s;
}

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(absl::string_view source) {
  const std::string src = Preprocess(source);
  std::vector<Token> tokens;
  size_t pos = 0;
  bool strip_next_text = false;
  auto error = [&](size_t at, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", what, " at offset ", at));
  };
  while (pos < src.size()) {
    size_t open = pos;
    for (;;) {
      open = src.find('{', open);
      if (open == std::string::npos || open + 1 >= src.size()) {
        open = std::string::npos;
        break;
      }
      const char c = src[open + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++open;
    }
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    const bool strip_before =
        open != std::string::npos && open + 2 < src.size() && src[open + 2] == '-';
    if (strip_next_text) {
      size_t i = 0;
      while (i < text.size() && IsSpace(text[i])) ++i;
      text.erase(0, i);
    }
    if (strip_before) {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    }
    if (!text.empty()) tokens.push_back({Token::Kind::kText, text, pos});
    strip_next_text = false;
    if (open == std::string::npos) break;
    const char kind = src[open + 1];
    pos = open + 2 + (strip_before ? 1 : 0);
    if (kind == '#') {
      const size_t close = src.find("#}", pos);
      if (close == std::string::npos) return error(open, "unterminated comment");
      strip_next_text = close > 0 && src[close - 1] == '-';
      pos = close + 2;
      continue;
    }
    const bool is_expr = kind == '{';
    tokens.push_back({is_expr ? Token::Kind::kExprOpen : Token::Kind::kStmtOpen, "", open});
    const char closer = is_expr ? '}' : '%';
    int depth = 0;  // of { } inside an expression (dict literals)
    for (;;) {
      while (pos < src.size() && IsSpace(src[pos])) ++pos;
      if (pos >= src.size()) return error(open, "unterminated tag");
      const bool minus_close =
          src[pos] == '-' && pos + 2 < src.size() && src[pos + 1] == closer && src[pos + 2] == '}';
      if (depth == 0 &&
          (minus_close || (src[pos] == closer && pos + 1 < src.size() && src[pos + 1] == '}'))) {
        strip_next_text = minus_close;
        pos += minus_close ? 3 : 2;
        tokens.push_back({is_expr ? Token::Kind::kExprClose : Token::Kind::kStmtClose, "", pos});
        break;
      }
      const char c = src[pos];
      const size_t start = pos;
      if (c == '\'' || c == '"') {
        std::string value;
        ++pos;
        while (pos < src.size() && src[pos] != c) {
          if (src[pos] == '\\' && pos + 1 < src.size()) {
            const char e = src[++pos];
            switch (e) {
              case 'n':
                value += '\n';
                break;
              case 't':
                value += '\t';
                break;
              case 'r':
                value += '\r';
                break;
              case 'b':
                value += '\b';
                break;
              case 'f':
                value += '\f';
                break;
              case 'v':
                value += '\v';
                break;
              case '\'':
              case '"':
              case '\\':
                value += e;
                break;
              default:
                value += '\\';
                value += e;
            }
            ++pos;
          } else {
            value += src[pos++];
          }
        }
        if (pos >= src.size()) return error(start, "unterminated string");
        ++pos;
        tokens.push_back({Token::Kind::kString, value, start});
      } else if (IsDigit(c)) {
        while (pos < src.size() && IsDigit(src[pos])) ++pos;
        bool is_float = false;
        if (pos + 1 < src.size() && src[pos] == '.' && IsDigit(src[pos + 1])) {
          is_float = true;
          ++pos;
          while (pos < src.size() && IsDigit(src[pos])) ++pos;
        }
        tokens.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInteger,
                          src.substr(start, pos - start), start});
      } else if (IsNameStart(c)) {
        while (pos < src.size() && (IsNameStart(src[pos]) || IsDigit(src[pos]))) ++pos;
        tokens.push_back({Token::Kind::kName, src.substr(start, pos - start), start});
      } else {
        static const char* const kTwoChar[] = {"==", "!=", "<=", ">=", "//", "**"};
        std::string op(1, c);
        for (const char* two : kTwoChar) {
          if (src.compare(pos, 2, two) == 0) op = two;
        }
        if (op.size() == 1 && std::string("+-*/%<>=()[]{},.:|~").find(c) == std::string::npos) {
          return error(pos, absl::StrCat("unexpected character '", op, "'"));
        }
        if (op == "{") ++depth;
        if (op == "}") --depth;
        pos += op.size();
        tokens.push_back({Token::Kind::kOperator, op, start});
      }
    }
  }
  tokens.push_back({Token::Kind::kEnd, "", src.size()});
  return tokens;
}

}  // namespace dsv3::tokenizer::jinja
