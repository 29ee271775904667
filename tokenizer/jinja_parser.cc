#include "tokenizer/jinja_parser.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tokenizer/jinja_lexer.h"

namespace dsv3::tokenizer::jinja {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body ParseTemplate() {
    Body body = ParseBody({});
    if (Peek().kind != Token::Kind::kEnd) Fail("unexpected tag");
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& t = Peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  [[noreturn]] void Fail(absl::string_view what) const {
    throw JinjaError{
        absl::StrCat("chat template: ", what, " at offset ", Peek().offset,
                     Peek().text.empty() ? "" : absl::StrCat(" ('", Peek().text, "')"))};
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  void ExpectOp(absl::string_view op) {
    if (!IsOp(op)) Fail(absl::StrCat("expected '", op, "'"));
    Next();
  }
  void ExpectName(absl::string_view name) {
    if (!IsName(name)) Fail(absl::StrCat("expected '", name, "'"));
    Next();
  }
  std::string TakeName() {
    if (Peek().kind != Token::Kind::kName) Fail("expected a name");
    return Next().text;
  }
  void ExpectStmtClose() {
    if (Peek().kind != Token::Kind::kStmtClose) Fail("expected '%}'");
    Next();
  }

  // Parses statements until a {% tag %} whose keyword is in `stops` (left unconsumed, the
  // position is at its keyword) or the end.
  Body ParseBody(const std::vector<absl::string_view>& stops) {
    Body body;
    for (;;) {
      const Token& t = Peek();
      if (t.kind == Token::Kind::kEnd) return body;
      if (t.kind == Token::Kind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->text = Next().text;
        body.push_back(std::move(s));
        continue;
      }
      if (t.kind == Token::Kind::kExprOpen) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->expr = ParseExpression();
        if (Peek().kind != Token::Kind::kExprClose) Fail("expected '}}'");
        Next();
        body.push_back(std::move(s));
        continue;
      }
      if (t.kind != Token::Kind::kStmtOpen) Fail("unexpected token");
      const Token& keyword = Peek(1);
      for (absl::string_view stop : stops) {
        if (keyword.kind == Token::Kind::kName && keyword.text == stop) {
          Next();
          return body;
        }
      }
      Next();
      body.push_back(ParseStatement());
    }
  }

  std::unique_ptr<Stmt> ParseStatement() {
    const std::string keyword = TakeName();
    auto s = std::make_unique<Stmt>();
    if (keyword == "if") {
      s->kind = Stmt::Kind::kIf;
      ExprPtr cond = ParseExpression();
      ExpectStmtClose();
      for (;;) {
        Body body = ParseBody({"elif", "else", "endif"});
        s->branches.emplace_back(std::move(cond), std::move(body));
        const std::string k = TakeName();
        if (k == "elif") {
          cond = ParseExpression();
          ExpectStmtClose();
          continue;
        }
        ExpectStmtClose();
        if (k == "else") {
          s->else_body = ParseBody({"endif"});
          ExpectName("endif");
          ExpectStmtClose();
        }
        break;
      }
    } else if (keyword == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets.push_back(TakeName());
      while (IsOp(",")) {
        Next();
        s->targets.push_back(TakeName());
      }
      ExpectName("in");
      s->expr = ParseTernary(/*allow_if=*/false);
      if (IsName("if")) {
        Next();
        s->filter = ParseOr();
      }
      ExpectStmtClose();
      s->body = ParseBody({"else", "endfor"});
      if (TakeName() == "else") {
        ExpectStmtClose();
        s->else_body = ParseBody({"endfor"});
        ExpectName("endfor");
      }
      ExpectStmtClose();
    } else if (keyword == "set") {
      s->kind = Stmt::Kind::kSet;
      s->targets.push_back(TakeName());
      if (IsOp(".")) {
        Next();
        s->targets.push_back(TakeName());
      }
      if (!IsOp("=")) Fail("only '{% set name = value %}' is supported");
      Next();
      s->expr = ParseExpression();
      ExpectStmtClose();
    } else if (keyword == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->macro = std::make_unique<MacroDef>();
      s->macro->name = TakeName();
      ExpectOp("(");
      while (!IsOp(")")) {
        s->macro->params.push_back(TakeName());
        ExprPtr def;
        if (IsOp("=")) {
          Next();
          def = ParseExpression();
        }
        s->macro->defaults.push_back(std::move(def));
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp(")");
      ExpectStmtClose();
      s->macro->body = ParseBody({"endmacro"});
      ExpectName("endmacro");
      ExpectStmtClose();
    } else if (keyword == "break" || keyword == "continue") {
      s->kind = keyword == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      ExpectStmtClose();
    } else {
      --pos_;
      Fail(absl::StrCat("unsupported tag '", keyword, "'"));
    }
    return s;
  }

  ExprPtr Make(Expr::Kind kind, std::string name = "") {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->name = std::move(name);
    return e;
  }
  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b) {
    ExprPtr e = Make(Expr::Kind::kBinary, std::move(op));
    e->kids.push_back(std::move(a));
    e->kids.push_back(std::move(b));
    return e;
  }

  ExprPtr ParseExpression() {
    ExprPtr e = ParseTernary(/*allow_if=*/true);
    if (IsOp(",")) {  // a bare tuple, e.g. {% set a = 1, 2 %}
      ExprPtr t = Make(Expr::Kind::kTuple);
      t->kids.push_back(std::move(e));
      while (IsOp(",")) {
        Next();
        t->kids.push_back(ParseTernary(true));
      }
      return t;
    }
    return e;
  }

  ExprPtr ParseTernary(bool allow_if) {
    ExprPtr a = ParseOr();
    if (allow_if && IsName("if")) {
      Next();
      ExprPtr e = Make(Expr::Kind::kTernary);
      e->kids.push_back(ParseOr());
      e->kids.push_back(std::move(a));
      if (IsName("else")) {
        Next();
        e->kids.push_back(ParseTernary(true));
      } else {
        e->kids.push_back(nullptr);
      }
      return e;
    }
    return a;
  }
  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (IsName("or")) Next(), e = Binary("or", std::move(e), ParseAnd());
    return e;
  }
  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (IsName("and")) Next(), e = Binary("and", std::move(e), ParseNot());
    return e;
  }
  ExprPtr ParseNot() {
    if (IsName("not")) {
      Next();
      ExprPtr e = Make(Expr::Kind::kUnary, "not");
      e->kids.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }
  ExprPtr ParseCompare() {
    ExprPtr e = ParseConcat();
    for (;;) {
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        std::string op = Next().text;
        e = Binary(op, std::move(e), ParseConcat());
      } else if (IsName("in")) {
        Next();
        e = Binary("in", std::move(e), ParseConcat());
      } else if (IsName("not") && IsName("in", 1)) {
        Next(), Next();
        e = Binary("not in", std::move(e), ParseConcat());
      } else if (IsName("is")) {
        Next();
        ExprPtr t = Make(Expr::Kind::kTest);
        if (IsName("not")) Next(), t->negate = true;
        // `none`, `true`... are names here, as are ordinary tests.
        t->name = TakeName();
        t->kids.push_back(std::move(e));
        if (IsOp("(")) ParseArgs(t.get());
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprPtr ParseConcat() {
    ExprPtr e = ParseAdd();
    while (IsOp("~")) Next(), e = Binary("~", std::move(e), ParseAdd());
    return e;
  }
  ExprPtr ParseAdd() {
    ExprPtr e = ParseMul();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Next().text;
      e = Binary(op, std::move(e), ParseMul());
    }
    return e;
  }
  ExprPtr ParseMul() {
    ExprPtr e = ParseUnary();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Next().text;
      e = Binary(op, std::move(e), ParseUnary());
    }
    return e;
  }
  ExprPtr ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      ExprPtr e = Make(Expr::Kind::kUnary, Next().text);
      e->kids.push_back(ParseUnary());
      return e;
    }
    return ParsePower();
  }
  ExprPtr ParsePower() {
    ExprPtr e = ParseFilter();
    if (IsOp("**")) Next(), e = Binary("**", std::move(e), ParseUnary());
    return e;
  }
  ExprPtr ParseFilter() {
    ExprPtr e = ParsePostfix(ParsePrimary());
    while (IsOp("|")) {
      Next();
      ExprPtr f = Make(Expr::Kind::kFilter, TakeName());
      f->kids.push_back(std::move(e));
      if (IsOp("(")) ParseArgs(f.get());
      e = std::move(f);
    }
    return e;
  }
  // Appends call arguments to `e->kids` (keyword arguments last, named in e->keywords).
  void ParseArgs(Expr* e) {
    ExpectOp("(");
    std::vector<ExprPtr> keyword_values;
    while (!IsOp(")")) {
      if (Peek().kind == Token::Kind::kName && IsOp("=", 1)) {
        e->keywords.push_back(Next().text);
        Next();
        keyword_values.push_back(ParseTernary(true));
      } else {
        if (!keyword_values.empty()) Fail("positional argument after keyword argument");
        e->kids.push_back(ParseTernary(true));
      }
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
    for (auto& v : keyword_values) e->kids.push_back(std::move(v));
  }
  ExprPtr ParsePostfix(ExprPtr e) {
    for (;;) {
      if (IsOp(".")) {
        Next();
        ExprPtr m = Make(Expr::Kind::kMember, TakeName());
        m->kids.push_back(std::move(e));
        e = std::move(m);
      } else if (IsOp("[")) {
        Next();
        ExprPtr parts[3];
        int n = 0;
        bool slice = false;
        for (;;) {
          if (!IsOp(":") && !IsOp("]")) parts[n] = ParseTernary(true);
          if (IsOp(":") && n < 2) {
            Next();
            slice = true;
            ++n;
            continue;
          }
          break;
        }
        ExpectOp("]");
        ExprPtr i = Make(slice ? Expr::Kind::kSlice : Expr::Kind::kIndex);
        i->kids.push_back(std::move(e));
        if (!slice && parts[0] == nullptr) Fail("empty subscript");
        i->kids.push_back(std::move(parts[0]));
        if (slice) i->kids.push_back(std::move(parts[1])), i->kids.push_back(std::move(parts[2]));
        e = std::move(i);
      } else if (IsOp("(")) {
        ExprPtr c = Make(Expr::Kind::kCall);
        c->kids.push_back(std::move(e));
        ParseArgs(c.get());
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprPtr ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case Token::Kind::kString: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        std::string s = Next().text;
        while (Peek().kind == Token::Kind::kString) s += Next().text;  // implicit concatenation
        e->literal = s;
        return e;
      }
      case Token::Kind::kInteger: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = std::stoll(Next().text);
        return e;
      }
      case Token::Kind::kFloat: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = std::stod(Next().text);
        return e;
      }
      case Token::Kind::kName: {
        const std::string name = Next().text;
        ExprPtr e = Make(Expr::Kind::kLiteral);
        if (name == "true" || name == "True") return e->literal = true, std::move(e);
        if (name == "false" || name == "False") return e->literal = false, std::move(e);
        if (name == "none" || name == "None") return e->literal = nullptr, std::move(e);
        return Make(Expr::Kind::kName, name);
      }
      case Token::Kind::kOperator:
        break;
      default:
        Fail("expected an expression");
    }
    if (IsOp("(")) {
      Next();
      ExprPtr e = ParseExpression();
      ExpectOp(")");
      return e;
    }
    if (IsOp("[")) {
      Next();
      ExprPtr e = Make(Expr::Kind::kList);
      while (!IsOp("]")) {
        e->kids.push_back(ParseTernary(true));
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp("]");
      return e;
    }
    if (IsOp("{")) {
      Next();
      ExprPtr e = Make(Expr::Kind::kDict);
      while (!IsOp("}")) {
        e->kids.push_back(ParseTernary(true));
        ExpectOp(":");
        e->kids.push_back(ParseTernary(true));
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp("}");
      return e;
    }
    Fail("expected an expression");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Body> Parse(absl::string_view source) {
  DSV3_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  try {
    return Parser(std::move(tokens)).ParseTemplate();
  } catch (const JinjaError& e) {
    return absl::InvalidArgumentError(e.message);
  }
}

}  // namespace dsv3::tokenizer::jinja
