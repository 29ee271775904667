#include "tokenizer/jinja_interpreter.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenizer/jinja_string_ops.h"

namespace dsv3::tokenizer::jinja {
namespace {

[[noreturn]] void Fail(const std::string& what) { throw JinjaError{"chat template: " + what}; }

// Python-style index normalisation.
int64_t Wrap(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

class Interpreter {
 public:
  explicit Interpreter(const Json& context) {
    scopes_.emplace_back();
    for (auto it = context.begin(); it != context.end(); ++it)
      scopes_[0][it.key()] = Value::Data(*it);
  }

  void Run(const Body& body, std::string* out) {
    for (const auto& s : body) {
      Exec(*s, out);
      if (loop_control_ != LoopControl::kNone) return;
    }
  }

 private:
  enum class LoopControl { kNone, kBreak, kContinue };

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::Undefined();
  }

  void Exec(const Stmt& s, std::string* out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out->append(s.text);
        return;
      case Stmt::Kind::kOutput:
        out->append(ToText(Eval(*s.expr)));
        return;
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (Truthy(Eval(*cond))) return Run(body, out);
        }
        return Run(s.else_body, out);
      case Stmt::Kind::kFor:
        return ExecFor(s, out);
      case Stmt::Kind::kSet: {
        Value v = Eval(*s.expr);
        if (s.targets.size() == 1) {
          scopes_.back()[s.targets[0]] = std::move(v);
          return;
        }
        Value ns = Lookup(s.targets[0]);
        if (ns.kind != Value::Kind::kNamespace) Fail("cannot set an attribute of " + s.targets[0]);
        (*ns.ns)[s.targets[1]] = ToJson(v);
        return;
      }
      case Stmt::Kind::kMacro: {
        Value m;
        m.kind = Value::Kind::kMacro;
        m.macro = s.macro.get();
        scopes_.back()[s.macro->name] = m;
        return;
      }
      case Stmt::Kind::kBreak:
        loop_control_ = LoopControl::kBreak;
        return;
      case Stmt::Kind::kContinue:
        loop_control_ = LoopControl::kContinue;
        return;
    }
  }

  void ExecFor(const Stmt& s, std::string* out) {
    Value iterable = Eval(*s.expr);
    std::vector<Json> items;
    if (iterable.is_array()) {
      items.assign(iterable.json.begin(), iterable.json.end());
    } else if (iterable.is_object()) {
      for (auto it = iterable.json.begin(); it != iterable.json.end(); ++it)
        items.push_back(it.key());
    } else if (iterable.is_string()) {
      Fail("iterating over a string is not supported");
    } else {
      Fail("cannot iterate over " +
           std::string(iterable.is_undefined() ? "undefined" : iterable.json.type_name()));
    }
    std::vector<Json> selected;
    for (Json& item : items) {
      if (s.filter) {
        scopes_.emplace_back();
        Bind(s.targets, item);
        const bool keep = Truthy(Eval(*s.filter));
        scopes_.pop_back();
        if (!keep) continue;
      }
      selected.push_back(std::move(item));
    }
    if (selected.empty()) return Run(s.else_body, out);
    const int64_t n = static_cast<int64_t>(selected.size());
    for (int64_t i = 0; i < n; ++i) {
      scopes_.emplace_back();
      Bind(s.targets, selected[i]);
      scopes_.back()["loop"] = Value::Data(Json{{"index", i + 1},
                                                {"index0", i},
                                                {"revindex", n - i},
                                                {"revindex0", n - i - 1},
                                                {"first", i == 0},
                                                {"last", i == n - 1},
                                                {"length", n}});
      Run(s.body, out);
      scopes_.pop_back();
      if (loop_control_ == LoopControl::kBreak) {
        loop_control_ = LoopControl::kNone;
        break;
      }
      loop_control_ = LoopControl::kNone;
    }
  }

  void Bind(const std::vector<std::string>& targets, const Json& item) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = Value::Data(item);
      return;
    }
    if (!item.is_array() || item.size() != targets.size()) Fail("cannot unpack loop item");
    for (size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = Value::Data(item[i]);
  }

  static Json ToJson(const Value& v) {
    if (v.kind == Value::Kind::kNamespace) return *v.ns;
    if (v.kind == Value::Kind::kData) return v.json;
    return Json();  // undefined stored as none
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return Value::Data(e.literal);
      case Expr::Kind::kName:
        return Lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        Json a = Json::array();
        for (const auto& k : e.kids) a.push_back(ToJson(Eval(*k)));
        return Value::Data(std::move(a));
      }
      case Expr::Kind::kDict: {
        Json o = Json::object();
        for (size_t i = 0; i + 1 < e.kids.size(); i += 2) {
          Value k = Eval(*e.kids[i]);
          if (!k.is_string()) Fail("dict keys must be strings");
          o[k.str()] = ToJson(Eval(*e.kids[i + 1]));
        }
        return Value::Data(std::move(o));
      }
      case Expr::Kind::kMember:
        return Member(Eval(*e.kids[0]), e.name);
      case Expr::Kind::kIndex:
        return Index(Eval(*e.kids[0]), Eval(*e.kids[1]));
      case Expr::Kind::kSlice:
        return Slice(e);
      case Expr::Kind::kCall:
        return Call(e);
      case Expr::Kind::kFilter:
        return Filter(e);
      case Expr::Kind::kTest: {
        const bool r = Test(e);
        return Value::Data(e.negate ? !r : r);
      }
      case Expr::Kind::kUnary: {
        Value v = Eval(*e.kids[0]);
        if (e.name == "not") return Value::Data(!Truthy(v));
        if (!v.is_number()) Fail("unary " + e.name + " needs a number");
        if (e.name == "+") return v;
        if (v.json.is_number_integer()) return Value::Data(-v.json.get<int64_t>());
        return Value::Data(-v.json.get<double>());
      }
      case Expr::Kind::kBinary:
        return Binary(e);
      case Expr::Kind::kTernary:
        if (Truthy(Eval(*e.kids[0]))) return Eval(*e.kids[1]);
        return e.kids[2] ? Eval(*e.kids[2]) : Value::Undefined();
    }
    Fail("bad expression");
  }

  Value Member(const Value& obj, const std::string& name) {
    if (obj.kind == Value::Kind::kNamespace) {
      auto it = obj.ns->find(name);
      return it == obj.ns->end() ? Value::Undefined() : Value::Data(*it);
    }
    if (obj.is_object()) {
      auto it = obj.json.find(name);
      if (it != obj.json.end()) return Value::Data(*it);
      return Value::Undefined();
    }
    if (obj.is_array() && name == "length") return Value::Data(obj.json.size());
    if (obj.is_undefined()) Fail("cannot read attribute '" + name + "' of undefined");
    return Value::Undefined();
  }

  Value Index(const Value& obj, const Value& key) {
    if (obj.is_array() && key.json.is_number_integer()) {
      const int64_t n = obj.json.size(), i = Wrap(key.json.get<int64_t>(), n);
      return i >= 0 && i < n ? Value::Data(obj.json[i]) : Value::Undefined();
    }
    if (obj.is_string() && key.json.is_number_integer()) {
      // Code-point indexing is not needed by chat templates; bytes would be wrong for UTF-8.
      Fail("string indexing is not supported");
    }
    if (key.is_string()) return Member(obj, key.str());
    if (obj.is_undefined()) Fail("cannot index undefined");
    return Value::Undefined();
  }

  Value Slice(const Expr& e) {
    Value obj = Eval(*e.kids[0]);
    auto bound = [&](int i) -> std::optional<int64_t> {
      if (!e.kids[i]) return std::nullopt;
      Value v = Eval(*e.kids[i]);
      if (!v.json.is_number_integer()) Fail("slice bounds must be integers");
      return v.json.get<int64_t>();
    };
    const std::optional<int64_t> a = bound(1), b = bound(2), st = bound(3);
    const int64_t step = st.value_or(1);
    if (step == 0) Fail("slice step cannot be zero");
    if (!obj.is_array() && !obj.is_string()) Fail("only lists and strings can be sliced");
    // Strings slice by character (code point).
    std::vector<std::string> chars;
    if (obj.is_string()) {
      for (unsigned char c : obj.str()) {
        if ((c & 0xC0) != 0x80 || chars.empty()) chars.emplace_back();
        chars.back().push_back(static_cast<char>(c));
      }
    }
    const int64_t n = obj.is_array() ? obj.json.size() : chars.size();
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = Wrap(*v, n);
      return std::clamp<int64_t>(x, step > 0 ? 0 : -1, step > 0 ? n : n - 1);
    };
    const int64_t start = clamp(a, step > 0 ? 0 : n - 1), stop = clamp(b, step > 0 ? n : -1);
    Json arr = Json::array();
    std::string str;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (obj.is_array())
        arr.push_back(obj.json[i]);
      else
        str += chars[i];
    }
    return obj.is_array() ? Value::Data(std::move(arr)) : Value::Data(std::move(str));
  }

  std::vector<Value> Args(const Expr& e, size_t first, std::map<std::string, Value>* kwargs) {
    std::vector<Value> args;
    const size_t positional_end = e.kids.size() - e.keywords.size();
    for (size_t i = first; i < positional_end; ++i) args.push_back(Eval(*e.kids[i]));
    for (size_t i = 0; i < e.keywords.size(); ++i) {
      (*kwargs)[e.keywords[i]] = Eval(*e.kids[positional_end + i]);
    }
    return args;
  }

  Value Call(const Expr& e) {
    const Expr& callee = *e.kids[0];
    std::map<std::string, Value> kwargs;
    if (callee.kind == Expr::Kind::kMember) {
      Value obj = Eval(*callee.kids[0]);
      std::vector<Value> args = Args(e, 1, &kwargs);
      return Method(obj, callee.name, args);
    }
    std::vector<Value> args = Args(e, 1, &kwargs);
    if (callee.kind == Expr::Kind::kName) {
      Value f = Lookup(callee.name);
      if (f.kind == Value::Kind::kMacro) return CallMacro(*f.macro, args, kwargs);
      if (f.is_undefined()) {
        if (callee.name == "namespace") {
          Value ns;
          ns.kind = Value::Kind::kNamespace;
          ns.ns = std::make_shared<Json>(Json::object());
          for (const auto& [k, v] : kwargs) (*ns.ns)[k] = ToJson(v);
          return ns;
        }
        if (callee.name == "raise_exception") {
          Fail("raise_exception: " + (args.empty() ? std::string() : ToText(args[0])));
        }
        if (callee.name == "range") {
          int64_t lo = 0, hi = 0, step = 1;
          if (args.size() == 1) hi = args[0].json.get<int64_t>();
          if (args.size() >= 2) lo = args[0].json.get<int64_t>(), hi = args[1].json.get<int64_t>();
          if (args.size() == 3) step = args[2].json.get<int64_t>();
          if (step == 0) Fail("range step cannot be zero");
          Json a = Json::array();
          for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) a.push_back(i);
          return Value::Data(std::move(a));
        }
      }
    }
    Fail("unsupported function call");
  }

  Value CallMacro(const MacroDef& m, const std::vector<Value>& args,
                  const std::map<std::string, Value>& kwargs) {
    scopes_.emplace_back();
    for (size_t i = 0; i < m.params.size(); ++i) {
      Value v;
      if (i < args.size())
        v = args[i];
      else if (auto it = kwargs.find(m.params[i]); it != kwargs.end())
        v = it->second;
      else if (m.defaults[i])
        v = Eval(*m.defaults[i]);
      scopes_.back()[m.params[i]] = v;
    }
    std::string out;
    Run(m.body, &out);
    scopes_.pop_back();
    return Value::Data(out);
  }

  Value Method(const Value& obj, const std::string& name, const std::vector<Value>& args) {
    auto arg_str = [&](size_t i) -> const std::string& {
      if (i >= args.size() || !args[i].is_string()) Fail(name + "() needs a string argument");
      return args[i].str();
    };
    if (obj.is_string()) {
      const std::string& s = obj.str();
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const std::string* chars = args.empty() || args[0].is_none() ? nullptr : &arg_str(0);
        return Value::Data(Strip(s, chars, name != "rstrip", name != "lstrip"));
      }
      if (name == "startswith") return Value::Data(s.rfind(arg_str(0), 0) == 0);
      if (name == "endswith") {
        const std::string& t = arg_str(0);
        return Value::Data(s.size() >= t.size() &&
                           s.compare(s.size() - t.size(), t.size(), t) == 0);
      }
      if (name == "upper" || name == "lower") {
        std::string r = s;
        for (char& c : r)
          c = name == "upper" ? std::toupper(static_cast<unsigned char>(c))
                              : std::tolower(static_cast<unsigned char>(c));
        return Value::Data(r);
      }
      if (name == "replace") return Value::Data(Replace(s, arg_str(0), arg_str(1)));
      if (name == "split")
        return Value::Data(Split(s, args.empty() || args[0].is_none() ? nullptr : &arg_str(0),
                                 args.size() > 1 && args[1].json.is_number_integer()
                                     ? args[1].json.get<int64_t>()
                                     : -1));
    }
    if (obj.is_object()) {
      if (name == "get") {
        if (args.empty() || !args[0].is_string()) Fail("get() needs a key");
        auto it = obj.json.find(args[0].str());
        if (it != obj.json.end()) return Value::Data(*it);
        return args.size() > 1 ? args[1] : Value::Data(nullptr);
      }
      if (name == "items") {
        Json a = Json::array();
        for (auto it = obj.json.begin(); it != obj.json.end(); ++it)
          a.push_back(Json::array({it.key(), *it}));
        return Value::Data(std::move(a));
      }
      if (name == "keys" || name == "values") {
        Json a = Json::array();
        for (auto it = obj.json.begin(); it != obj.json.end(); ++it)
          a.push_back(name == "keys" ? Json(it.key()) : *it);
        return Value::Data(std::move(a));
      }
    }
    Fail("unsupported method '" + name + "'");
  }

  Value Filter(const Expr& e) {
    Value v = Eval(*e.kids[0]);
    std::map<std::string, Value> kwargs;
    std::vector<Value> args = Args(e, 1, &kwargs);
    const std::string& f = e.name;
    if (f == "length" || f == "count") {
      if (v.is_string()) {
        size_t n = 0;  // code points
        for (unsigned char c : v.str()) n += (c & 0xC0) != 0x80;
        return Value::Data(n);
      }
      if (v.is_array() || v.is_object()) return Value::Data(v.json.size());
      Fail("length of a non-sequence");
    }
    if (f == "trim") {
      if (!v.is_string()) Fail("trim of a non-string");
      return Value::Data(Strip(v.str(), nullptr, true, true));
    }
    if (f == "string") return Value::Data(ToText(v));
    if (f == "safe") return v;
    if (f == "upper" || f == "lower") return Method(Value::Data(ToText(v)), f, {});
    if (f == "capitalize") {
      std::string s = ToText(v);
      for (size_t i = 0; i < s.size(); ++i)
        s[i] = i ? std::tolower(static_cast<unsigned char>(s[i]))
                 : std::toupper(static_cast<unsigned char>(s[i]));
      return Value::Data(s);
    }
    if (f == "tojson") {
      int indent = 0;
      if (auto it = kwargs.find("indent");
          it != kwargs.end() && it->second.json.is_number_integer())
        indent = it->second.json.get<int>();
      if (!args.empty() && args[0].json.is_number_integer()) indent = args[0].json.get<int>();
      return Value::Data(ToJsonText(ToJson(v), indent));
    }
    if (f == "first" || f == "last") {
      if (!v.is_array()) Fail(f + " of a non-list");
      if (v.json.empty()) return Value::Undefined();
      return Value::Data(f == "first" ? v.json.front() : v.json.back());
    }
    if (f == "join") {
      if (!v.is_array()) Fail("join of a non-list");
      const std::string sep = args.empty() ? "" : ToText(args[0]);
      std::vector<std::string> parts;
      for (const Json& j : v.json) parts.push_back(ToText(Value::Data(j)));
      return Value::Data(absl::StrJoin(parts, sep));
    }
    if (f == "default" || f == "d") {
      const bool boolean = args.size() > 1 && Truthy(args[1]);
      if (v.is_undefined() || (boolean && !Truthy(v)))
        return args.empty() ? Value::Data("") : args[0];
      return v;
    }
    if (f == "items") return Method(v, "items", {});
    if (f == "list") {
      if (v.is_array()) return v;
      if (v.is_object()) return Method(v, "keys", {});
      Fail("list of a non-sequence");
    }
    if (f == "reverse") {
      if (!v.is_array()) Fail("reverse of a non-list");
      Json a = Json::array();
      for (auto it = v.json.rbegin(); it != v.json.rend(); ++it) a.push_back(*it);
      return Value::Data(std::move(a));
    }
    if (f == "replace") {
      if (args.size() < 2) Fail("replace needs two arguments");
      return Value::Data(Replace(ToText(v), ToText(args[0]), ToText(args[1])));
    }
    if (f == "int") {
      if (v.is_number()) return Value::Data(static_cast<int64_t>(v.json.get<double>()));
      Fail("int of a non-number");
    }
    if (f == "float") {
      if (v.is_number()) return Value::Data(v.json.get<double>());
      Fail("float of a non-number");
    }
    if (f == "abs") {
      if (v.json.is_number_integer()) return Value::Data(std::llabs(v.json.get<int64_t>()));
      if (v.is_number()) return Value::Data(std::fabs(v.json.get<double>()));
      Fail("abs of a non-number");
    }
    Fail("unsupported filter '" + f + "'");
  }

  bool Test(const Expr& e) {
    Value v = Eval(*e.kids[0]);
    std::map<std::string, Value> kwargs;
    std::vector<Value> args = Args(e, 1, &kwargs);
    const std::string& t = e.name;
    if (t == "defined") return !v.is_undefined();
    if (t == "undefined") return v.is_undefined();
    if (t == "none") return v.is_none();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.kind == Value::Kind::kData && v.json.is_number_integer();
    if (t == "float") return v.kind == Value::Kind::kData && v.json.is_number_float();
    if (t == "boolean") return v.kind == Value::Kind::kData && v.json.is_boolean();
    if (t == "true")
      return v.kind == Value::Kind::kData && v.json.is_boolean() && v.json.get<bool>();
    if (t == "false")
      return v.kind == Value::Kind::kData && v.json.is_boolean() && !v.json.get<bool>();
    if (t == "mapping") return v.is_object();
    if (t == "iterable") return v.is_array() || v.is_object() || v.is_string();
    if (t == "sequence") return v.is_array() || v.is_string();
    if (t == "callable") return v.kind == Value::Kind::kMacro;
    if (t == "odd" || t == "even") {
      if (!v.json.is_number_integer()) Fail(t + " of a non-integer");
      return (v.json.get<int64_t>() % 2 != 0) == (t == "odd");
    }
    if (t == "equalto" || t == "eq" || t == "sameas") {
      if (args.empty()) Fail(t + " needs an argument");
      return Equal(v, args[0]);
    }
    Fail("unsupported test '" + t + "'");
  }

  Value Binary(const Expr& e) {
    const std::string& op = e.name;
    Value a = Eval(*e.kids[0]);
    if (op == "and") return Truthy(a) ? Eval(*e.kids[1]) : a;
    if (op == "or") return Truthy(a) ? a : Eval(*e.kids[1]);
    Value b = Eval(*e.kids[1]);
    if (op == "==") return Value::Data(Equal(a, b));
    if (op == "!=") return Value::Data(!Equal(a, b));
    if (op == "in" || op == "not in") {
      bool member = false;
      if (b.is_undefined()) {
        member = false;
      } else if (b.is_array()) {
        for (const Json& j : b.json) member = member || Equal(a, Value::Data(j));
      } else if (b.is_string() && a.is_string()) {
        member = b.str().find(a.str()) != std::string::npos;
      } else if (b.is_object() && a.is_string()) {
        member = b.json.contains(a.str());
      } else {
        Fail("unsupported operands for 'in'");
      }
      return Value::Data(op == "in" ? member : !member);
    }
    if (a.is_undefined() || b.is_undefined()) Fail("cannot apply '" + op + "' to undefined");
    if (a.is_none() || b.is_none()) Fail("cannot apply '" + op + "' to none");
    if (op == "~") return Value::Data(ToText(a) + ToText(b));
    if (a.is_number() && b.is_number()) return Arithmetic(op, a.json, b.json);
    if (op == "+" && a.is_array() && b.is_array()) {
      Json r = a.json;
      for (const Json& j : b.json) r.push_back(j);
      return Value::Data(std::move(r));
    }
    if (op == "+" && (a.is_string() || b.is_string())) {
      auto raw = [](const Value& v) {
        return v.json.is_number_float() ? Json(v.json).dump() : ToText(v);
      };
      return Value::Data(raw(a) + raw(b));
    }
    if (a.is_string() && b.is_string() && (op == "<" || op == ">" || op == "<=" || op == ">=")) {
      const int c = a.str().compare(b.str());
      return Value::Data(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    Fail("unsupported operands for '" + op + "'");
  }

  static Value Arithmetic(const std::string& op, const Json& a, const Json& b) {
    const bool ints = a.is_number_integer() && b.is_number_integer();
    const double x = a.get<double>(), y = b.get<double>();
    if (op == "<") return Value::Data(x < y);
    if (op == ">") return Value::Data(x > y);
    if (op == "<=") return Value::Data(x <= y);
    if (op == ">=") return Value::Data(x >= y);
    if (op == "/") return Value::Data(x / y);
    double r;
    if (op == "+")
      r = x + y;
    else if (op == "-")
      r = x - y;
    else if (op == "*")
      r = x * y;
    else if (op == "//")
      r = std::floor(x / y);
    else if (op == "%")
      r = std::fmod(x, y);
    else if (op == "**")
      r = std::pow(x, y);
    else
      Fail("unsupported operator '" + op + "'");
    if (ints && !(op == "**" && y < 0)) return Value::Data(static_cast<int64_t>(r));
    return Value::Data(r);
  }

  std::vector<std::map<std::string, Value>> scopes_;
  LoopControl loop_control_ = LoopControl::kNone;
};

}  // namespace

absl::StatusOr<std::string> Render(const Body& program, const Json& context) {
  try {
    Interpreter interpreter(context);
    std::string out;
    interpreter.Run(program, &out);
    return out;
  } catch (const JinjaError& e) {
    return absl::InvalidArgumentError(e.message);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", e.what()));
  }
}

}  // namespace dsv3::tokenizer::jinja
