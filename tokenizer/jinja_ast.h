#ifndef DSV3_TOKENIZER_JINJA_AST_H_
#define DSV3_TOKENIZER_JINJA_AST_H_

// Syntax tree of the Jinja subset chat templates use (see jinja_parser.h for the grammar).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace dsv3::tokenizer::jinja {

struct Expr {
  enum class Kind {
    kLiteral,  // json
    kName,     // name
    kList,     // kids
    kTuple,    // kids
    kDict,     // kids: key, value, key, value...
    kMember,   // kids[0].name
    kIndex,    // kids[0][kids[1]]
    kSlice,    // kids[0][kids[1]:kids[2]:kids[3]] (null kids allowed)
    kCall,     // kids[0](kids[1..], keywords) -- keyword args are the last keywords.size() kids
    kFilter,   // kids[0] | name(kids[1..], keywords)
    kTest,     // kids[0] is [not] name(kids[1..]); negate
    kUnary,    // op kids[0]: "not", "-", "+"
    kBinary,   // kids[0] op kids[1]
    kTernary,  // kids[1] if kids[0] else kids[2] (kids[2] may be null)
  };
  Kind kind;
  std::string name;  // identifier, member, filter/test name or operator
  Json literal;
  bool negate = false;
  std::vector<std::unique_ptr<Expr>> kids;
  std::vector<std::string> keywords;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<std::unique_ptr<Expr>> defaults;  // per param, null when none
  Body body;
};

struct Stmt {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kMacro, kBreak, kContinue };
  Kind kind;
  std::string text;            // kText
  std::unique_ptr<Expr> expr;  // kOutput; kFor iterable; kSet value
  std::vector<std::pair<std::unique_ptr<Expr>, Body>> branches;  // kIf: condition, body
  Body body;                                                     // kFor body
  Body else_body;                                                // kIf / kFor else
  std::vector<std::string> targets;  // kFor loop variables; kSet name[, attr]
  std::unique_ptr<Expr> filter;      // kFor ... if filter
  std::unique_ptr<MacroDef> macro;   // kMacro
};

// Internal error type of the interpreter; never leaves tokenizer/ (converted to absl::Status
// at ChatTemplate's API).
struct JinjaError {
  std::string message;
};

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_AST_H_
