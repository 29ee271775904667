#include "tests/deploy/promql_names.h"

#include <cctype>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace dsv3::testing {
namespace {

bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Index just past the string literal that starts at `i` (quote char expr[i]).
size_t SkipString(absl::string_view expr, size_t i) {
  const char quote = expr[i++];
  while (i < expr.size() && expr[i] != quote) {
    if (expr[i] == '\\' && quote != '`') ++i;  // raw `strings` have no escapes
    ++i;
  }
  return i + 1;
}

// Index just past the bracket group that opens at `i` ('{', '[' or '('), strings skipped.
size_t SkipGroup(absl::string_view expr, size_t i) {
  const char open = expr[i];
  const char close = open == '{' ? '}' : open == '[' ? ']' : ')';
  int depth = 0;
  while (i < expr.size()) {
    char c = expr[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = SkipString(expr, i);
      continue;
    }
    if (c == open) ++depth;
    if (c == close && --depth == 0) return i + 1;
    ++i;
  }
  return i;
}

size_t SkipSpace(absl::string_view expr, size_t i) {
  while (i < expr.size() && std::isspace(static_cast<unsigned char>(expr[i]))) ++i;
  return i;
}

// Operators and aggregations, which may be followed by a modifier (`sum by (a) (x)`)
// rather than by their parenthesised arguments.
bool IsKeyword(absl::string_view word) {
  static const std::set<std::string, std::less<>> kKeywords = {
      "and",    "or",     "unless", "bool",         "offset",  "start", "end",     "inf",
      "nan",    "Inf",    "NaN",    "sum",          "min",     "max",   "avg",     "group",
      "stddev", "stdvar", "count",  "count_values", "bottomk", "topk",  "quantile"};
  return kKeywords.count(word) > 0;
}

// Keywords followed by a parenthesised list of label names.
bool TakesLabelList(absl::string_view word) {
  return word == "by" || word == "without" || word == "on" || word == "ignoring" ||
         word == "group_left" || word == "group_right";
}

}  // namespace

std::vector<std::string> MetricNamesInPromQL(absl::string_view expr) {
  std::vector<std::string> names;
  size_t i = 0;
  while (i < expr.size()) {
    char c = expr[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = SkipString(expr, i);
    } else if (c == '{' || c == '[') {
      i = SkipGroup(expr, i);  // label matchers, ranges, subqueries
    } else if (c == '#') {
      while (i < expr.size() && expr[i] != '\n') ++i;  // comment
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      // Numbers, including 1e3, 0x1f, and durations such as 5m.
      while (i < expr.size() && (IsNameChar(expr[i]) || expr[i] == '.')) ++i;
    } else if (IsNameStart(c)) {
      size_t start = i;
      while (i < expr.size() && IsNameChar(expr[i])) ++i;
      absl::string_view word = expr.substr(start, i - start);
      size_t next = SkipSpace(expr, i);
      if (TakesLabelList(word)) {
        if (next < expr.size() && expr[next] == '(') i = SkipGroup(expr, next);
      } else if (next < expr.size() && expr[next] == '(') {
        // A function or an aggregation: its arguments are scanned as they come.
      } else if (!IsKeyword(word)) {
        names.emplace_back(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

std::string SubstituteGrafanaVariables(absl::string_view expr) {
  std::string out;
  size_t i = 0;
  while (i < expr.size()) {
    if (expr[i] == '$') {
      size_t start = i + 1;
      size_t end = start;
      bool braced = start < expr.size() && expr[start] == '{';
      if (braced) {
        end = expr.find('}', start);
        if (end == absl::string_view::npos) end = expr.size();
      } else {
        while (end < expr.size() && IsNameChar(expr[end])) ++end;
      }
      absl::string_view name =
          expr.substr(start + (braced ? 1 : 0), end - start - (braced ? 1 : 0));
      // ${var:format} -> var
      name = name.substr(0, name.find(':'));
      if (name == "__rate_interval" || name == "__interval") {
        out += "1m";
      } else if (name == "__range") {
        out += "1h";
      } else {
        out += ".*";
      }
      i = braced ? end + 1 : end;
    } else if (expr.substr(i, 2) == "[[") {
      size_t end = expr.find("]]", i);
      out += ".*";
      i = end == absl::string_view::npos ? expr.size() : end + 2;
    } else {
      out += expr[i++];
    }
  }
  return out;
}

std::set<std::string> SampleNamesFromExposition(absl::string_view exposition) {
  std::set<std::string> names;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, "# TYPE ")) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (parts.size() != 2) continue;
    const std::string& name = parts[0];
    if (parts[1] == "histogram") {
      names.insert(name + "_bucket");
      names.insert(name + "_sum");
      names.insert(name + "_count");
    } else if (parts[1] == "summary") {
      names.insert(name);
      names.insert(name + "_sum");
      names.insert(name + "_count");
    } else {
      names.insert(name);
    }
  }
  return names;
}

}  // namespace dsv3::testing
