#ifndef DSV3_TOKENIZER_JINJA_VALUE_H_
#define DSV3_TOKENIZER_JINJA_VALUE_H_

// Values of the Jinja subset the chat template interpreter runs. Data (none, booleans,
// numbers, strings, lists, mappings) is an nlohmann::ordered_json (mappings keep insertion
// order, as the reference @huggingface/jinja does); `undefined`, namespaces (shared, mutable
// through `set ns.x = ...`) and macros are kinds of their own. Conversions to text follow
// @huggingface/jinja (the reference the tests compare against), not Python: `{{ none }}` and
// `{{ undefined }}` print nothing, booleans print `true`/`false`, floats keep a `.0`.

#include <memory>
#include <string>

#include "nlohmann/json.hpp"

namespace dsv3::tokenizer::jinja {

using Json = nlohmann::ordered_json;

struct MacroDef;  // jinja_ast.h

struct Value {
  enum class Kind { kUndefined, kData, kNamespace, kMacro };

  static Value Undefined() { return Value(); }
  static Value Data(Json j) {
    Value v;
    v.kind = Kind::kData;
    v.json = std::move(j);
    return v;
  }

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kData && json.is_null(); }
  bool is_string() const { return kind == Kind::kData && json.is_string(); }
  bool is_number() const { return kind == Kind::kData && json.is_number(); }
  bool is_array() const { return kind == Kind::kData && json.is_array(); }
  bool is_object() const { return kind == Kind::kData && json.is_object(); }
  const std::string& str() const { return json.get_ref<const std::string&>(); }

  Kind kind = Kind::kUndefined;
  Json json;                        // kData
  std::shared_ptr<Json> ns;         // kNamespace: an object shared by all copies
  const MacroDef* macro = nullptr;  // kMacro
};

// Python-style truthiness ("", [], {}, 0, none, undefined are false).
bool Truthy(const Value& v);
// What `{{ v }}` prints.
std::string ToText(const Value& v);
// JSON text the way the reference's `tojson` writes it (separators ", " and ": "; `indent`
// > 0 pretty-prints).
std::string ToJsonText(const Json& j, int indent = 0, int depth = 0);
// Loose equality (`==`) of two values.
bool Equal(const Value& a, const Value& b);

}  // namespace dsv3::tokenizer::jinja

#endif  // DSV3_TOKENIZER_JINJA_VALUE_H_
