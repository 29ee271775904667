#include "structured_output/grammar_builder.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace dsv3::structured_output {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxSchemaDepth = 32;

absl::Status Unsupported(const std::string& where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("JSON schema at ", where, ": ", what));
}

const std::set<std::string>& KnownKeywords() {
  static const auto* const kKnown = new std::set<std::string>{"type",
                                                              "properties",
                                                              "required",
                                                              "additionalProperties",
                                                              "items",
                                                              "minItems",
                                                              "maxItems",
                                                              "enum",
                                                              "const",
                                                              "anyOf",
                                                              "oneOf",
                                                              "minLength",
                                                              "maxLength",
                                                              "minimum",
                                                              "maximum",
                                                              "exclusiveMinimum",
                                                              "exclusiveMaximum",
                                                              "$ref",
                                                              "$defs",
                                                              "definitions",
                                                              "title",
                                                              "description",
                                                              "default",
                                                              "examples",
                                                              "$schema",
                                                              "$id",
                                                              "$comment",
                                                              "deprecated",
                                                              "readOnly",
                                                              "writeOnly"};
  return *kKnown;
}

// A non-negative integer keyword (minItems, maxLength ...), or -1 when absent.
absl::StatusOr<int64_t> Count(const Json& schema, const char* key, const std::string& where) {
  auto it = schema.find(key);
  if (it == schema.end()) return -1;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 20)) {
    return Unsupported(where, absl::StrCat("'", key, "' must be an integer in [0, 2^20]"));
  }
  return it->get<int64_t>();
}

}  // namespace

int32_t GrammarBuilder::Add(v1::GrammarNode node) {
  *grammar_.add_nodes() = std::move(node);
  return grammar_.nodes_size() - 1;
}

int32_t GrammarBuilder::Literals(const std::vector<std::string>& values) {
  v1::GrammarNode n;
  for (const std::string& v : values) n.mutable_literals()->add_values(v);
  return Add(std::move(n));
}

int32_t GrammarBuilder::Sequence(const std::vector<int32_t>& nodes) {
  v1::GrammarNode n;
  n.mutable_sequence()->mutable_nodes()->Add(nodes.begin(), nodes.end());
  return Add(std::move(n));
}

int32_t GrammarBuilder::Choice(const std::vector<int32_t>& nodes) {
  v1::GrammarNode n;
  n.mutable_choice()->mutable_nodes()->Add(nodes.begin(), nodes.end());
  return Add(std::move(n));
}

int32_t GrammarBuilder::Branch(const std::vector<std::string>& keys,
                               const std::vector<int32_t>& next) {
  v1::GrammarNode n;
  for (const std::string& k : keys) n.mutable_branch()->add_keys(k);
  n.mutable_branch()->mutable_next()->Add(next.begin(), next.end());
  return Add(std::move(n));
}

int32_t GrammarBuilder::Repeat(int32_t item, const std::string& separator, int32_t min,
                               int32_t max) {
  v1::GrammarNode n;
  v1::GrammarRepeat* r = n.mutable_repeat();
  r->set_item(item);
  r->set_separator(separator);
  r->set_min(min);
  if (max >= 0) r->set_max(max);
  return Add(std::move(n));
}

int32_t GrammarBuilder::String(int32_t min_length, int32_t max_length) {
  v1::GrammarNode n;
  n.mutable_string()->set_min_length(min_length);
  if (max_length >= 0) n.mutable_string()->set_max_length(max_length);
  return Add(std::move(n));
}

int32_t GrammarBuilder::Number() {
  v1::GrammarNode n;
  n.mutable_number();
  return Add(std::move(n));
}

int32_t GrammarBuilder::AnyValue() {
  if (any_value_ >= 0) return any_value_;
  any_value_ = Add(v1::GrammarNode());  // filled below: the value refers to itself
  v1::GrammarNode object;
  object.mutable_object()->set_additional(any_value_);
  any_object_ = Add(std::move(object));
  const int32_t array =
      Sequence({Literals({"["}), Repeat(any_value_, ",", 0, -1), Literals({"]"})});
  const std::vector<int32_t> alternatives = {any_object_, array, String(), Number(),
                                             Literals({"true", "false", "null"})};
  grammar_.mutable_nodes(any_value_)
      ->mutable_choice()
      ->mutable_nodes()
      ->Add(alternatives.begin(), alternatives.end());
  return any_value_;
}

int32_t GrammarBuilder::AnyObject() {
  AnyValue();
  return any_object_;
}

v1::Grammar GrammarBuilder::Build(int32_t root) const {
  v1::Grammar g = grammar_;
  g.set_root(root);
  return g;
}

absl::StatusOr<int32_t> GrammarBuilder::JsonSchema(const Json& schema) {
  root_schema_ = &schema;
  refs_.clear();  // each schema's $refs are its own
  absl::StatusOr<int32_t> node = Schema(schema, "#", 0);
  root_schema_ = nullptr;
  return node;
}

absl::StatusOr<int32_t> GrammarBuilder::Schema(const Json& schema, const std::string& where,
                                               int depth) {
  if (depth > kMaxSchemaDepth) {
    return Unsupported(where, absl::StrCat("nested deeper than ", kMaxSchemaDepth, " levels"));
  }
  if (schema.is_boolean()) {
    if (!schema.get<bool>()) return Unsupported(where, "the schema `false` matches nothing");
    return AnyValue();
  }
  if (!schema.is_object()) return Unsupported(where, "a schema must be an object or a boolean");
  for (auto it = schema.begin(); it != schema.end(); ++it) {
    if (KnownKeywords().count(it.key()) == 0) {
      return Unsupported(where, absl::StrCat("the keyword '", it.key(), "' is not supported"));
    }
  }
  if (auto ref = schema.find("$ref"); ref != schema.end()) {
    if (!ref->is_string()) return Unsupported(where, "'$ref' must be a string");
    return Ref(ref->get<std::string>(), where, depth);
  }
  if (auto c = schema.find("const"); c != schema.end()) return Literals({c->dump()});
  if (auto e = schema.find("enum"); e != schema.end()) {
    if (!e->is_array() || e->empty() || e->size() > 64) {
      return Unsupported(where, "'enum' must be an array of 1 to 64 values");
    }
    std::vector<std::string> values;
    for (const Json& v : *e) values.push_back(v.dump());
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return Literals(values);
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    auto it = schema.find(key);
    if (it == schema.end()) continue;
    if (!it->is_array() || it->empty()) {
      return Unsupported(where, absl::StrCat("'", key, "' must be a non-empty array"));
    }
    std::vector<int32_t> alternatives;
    for (size_t i = 0; i < it->size(); ++i) {
      DSV3_ASSIGN_OR_RETURN(int32_t alt,
                            Schema((*it)[i], absl::StrCat(where, "/", key, "/", i), depth + 1));
      alternatives.push_back(alt);
    }
    // Alternatives of different JSON types cannot both match: oneOf is anyOf here.
    return AnyOf(alternatives, where);
  }
  auto type = schema.find("type");
  if (type == schema.end()) {
    if (schema.contains("properties")) return Typed(schema, "object", where, depth);
    if (schema.contains("items")) return Typed(schema, "array", where, depth);
    return AnyValue();
  }
  if (type->is_string()) return Typed(schema, type->get<std::string>(), where, depth);
  if (!type->is_array() || type->empty()) {
    return Unsupported(where, "'type' must be a string or a non-empty array of strings");
  }
  std::set<std::string> types;
  for (const Json& t : *type) {
    if (!t.is_string()) return Unsupported(where, "'type' lists strings");
    types.insert(t.get<std::string>());
  }
  if (types.count("number")) types.erase("integer");  // every integer is a number
  std::vector<int32_t> alternatives;
  for (const std::string& t : types) {
    DSV3_ASSIGN_OR_RETURN(int32_t alt, Typed(schema, t, where, depth));
    alternatives.push_back(alt);
  }
  return AnyOf(alternatives, where);
}

absl::StatusOr<int32_t> GrammarBuilder::Typed(const Json& schema, const std::string& type,
                                              const std::string& where, int depth) {
  if (type == "object") return Object(schema, where, depth);
  if (type == "array") return Array(schema, where, depth);
  if (type == "integer") return Integer(schema, where);
  if (type == "boolean") return Literals({"false", "true"});
  if (type == "null") return Literals({"null"});
  if (type == "number") {
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      if (schema.contains(k)) {
        return Unsupported(where, absl::StrCat("'", k, "' is supported on integers, not numbers"));
      }
    }
    return Number();
  }
  if (type == "string") {
    DSV3_ASSIGN_OR_RETURN(int64_t min, Count(schema, "minLength", where));
    DSV3_ASSIGN_OR_RETURN(int64_t max, Count(schema, "maxLength", where));
    if (max >= 0 && min > max) return Unsupported(where, "minLength > maxLength");
    return String(static_cast<int32_t>(std::max<int64_t>(0, min)), static_cast<int32_t>(max));
  }
  return Unsupported(where, absl::StrCat("unknown type '", type, "'"));
}

absl::StatusOr<int32_t> GrammarBuilder::Object(const Json& schema, const std::string& where,
                                               int depth) {
  v1::GrammarNode node;
  v1::GrammarObject* object = node.mutable_object();
  std::set<std::string> required;
  if (auto r = schema.find("required"); r != schema.end()) {
    if (!r->is_array()) return Unsupported(where, "'required' must be an array of names");
    for (const Json& name : *r) {
      if (!name.is_string()) return Unsupported(where, "'required' must be an array of names");
      required.insert(name.get<std::string>());
    }
  }
  auto properties = schema.find("properties");
  if (properties != schema.end() && !properties->is_object()) {
    return Unsupported(where, "'properties' must be an object");
  }
  if (properties != schema.end() && !properties->empty()) {
    if (properties->size() > 64) return Unsupported(where, "more than 64 properties");
    for (auto it = properties->begin(); it != properties->end(); ++it) {
      DSV3_ASSIGN_OR_RETURN(
          int32_t value,
          Schema(it.value(), absl::StrCat(where, "/properties/", it.key()), depth + 1));
      v1::GrammarObject::Property* p = object->add_properties();
      p->set_key(Json(it.key()).dump());
      p->set_value(value);
      p->set_required(required.erase(it.key()) > 0);
    }
  }
  if (!required.empty()) {
    return Unsupported(where, absl::StrCat("required properties without a schema: ",
                                           absl::StrJoin(required, ", ")));
  }
  if (object->properties_size() == 0) {
    // With no properties listed, additionalProperties says what the keys' values are.
    auto additional = schema.find("additionalProperties");
    if (additional == schema.end() || additional->is_null() ||
        (additional->is_boolean() && additional->get<bool>())) {
      object->set_additional(AnyValue());
    } else if (additional->is_object()) {
      DSV3_ASSIGN_OR_RETURN(int32_t value,
                            Schema(*additional, where + "/additionalProperties", depth + 1));
      object->set_additional(value);
    }
  }
  // With properties listed, only they are written (valid whatever additionalProperties says).
  return Add(std::move(node));
}

absl::StatusOr<int32_t> GrammarBuilder::Array(const Json& schema, const std::string& where,
                                              int depth) {
  DSV3_ASSIGN_OR_RETURN(int64_t min, Count(schema, "minItems", where));
  DSV3_ASSIGN_OR_RETURN(int64_t max, Count(schema, "maxItems", where));
  if (max >= 0 && min > max) return Unsupported(where, "minItems > maxItems");
  if (max == 0) return Literals({"[]"});
  int32_t item = -1;
  if (auto items = schema.find("items"); items != schema.end()) {
    DSV3_ASSIGN_OR_RETURN(item, Schema(*items, where + "/items", depth + 1));
  } else {
    item = AnyValue();
  }
  const int32_t repeat =
      Repeat(item, ",", static_cast<int32_t>(std::max<int64_t>(0, min)), static_cast<int32_t>(max));
  return Sequence({Literals({"["}), repeat, Literals({"]"})});
}

absl::StatusOr<int32_t> GrammarBuilder::Integer(const Json& schema, const std::string& where) {
  v1::GrammarNode node;
  v1::GrammarInteger* integer = node.mutable_integer();
  constexpr double kLimit = 1e18;
  for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
    auto it = schema.find(key);
    if (it == schema.end()) continue;
    if (!it->is_number() || !std::isfinite(it->get<double>()) ||
        std::fabs(it->get<double>()) > kLimit) {
      return Unsupported(where, absl::StrCat("'", key, "' must be a number within +-1e18"));
    }
    const double v = it->get<double>();
    const absl::string_view k = key;
    if (k == "minimum")
      integer->set_minimum(std::max<int64_t>(
          integer->has_minimum() ? integer->minimum() : std::numeric_limits<int64_t>::min(),
          static_cast<int64_t>(std::ceil(v))));
    if (k == "exclusiveMinimum")
      integer->set_minimum(std::max<int64_t>(
          integer->has_minimum() ? integer->minimum() : std::numeric_limits<int64_t>::min(),
          static_cast<int64_t>(std::floor(v)) + 1));
    if (k == "maximum")
      integer->set_maximum(std::min<int64_t>(
          integer->has_maximum() ? integer->maximum() : std::numeric_limits<int64_t>::max(),
          static_cast<int64_t>(std::floor(v))));
    if (k == "exclusiveMaximum")
      integer->set_maximum(std::min<int64_t>(
          integer->has_maximum() ? integer->maximum() : std::numeric_limits<int64_t>::max(),
          static_cast<int64_t>(std::ceil(v)) - 1));
  }
  if (integer->has_minimum() && integer->has_maximum() && integer->minimum() > integer->maximum()) {
    return Unsupported(where, "no integer lies between the minimum and the maximum");
  }
  return Add(std::move(node));
}

// Alternatives are told apart by their first byte; literal alternatives that share one
// merge into one set of literals.
absl::StatusOr<int32_t> GrammarBuilder::AnyOf(const std::vector<int32_t>& alternatives,
                                              const std::string& where) {
  if (alternatives.size() == 1) return alternatives[0];
  std::vector<std::string> literals;
  std::vector<int32_t> others;
  for (int32_t a : alternatives) {
    const v1::GrammarNode& n = grammar_.nodes(a);
    if (n.has_literals()) {
      literals.insert(literals.end(), n.literals().values().begin(), n.literals().values().end());
    } else {
      others.push_back(a);
    }
  }
  std::vector<int32_t> options = others;
  if (!literals.empty()) {
    std::sort(literals.begin(), literals.end());
    literals.erase(std::unique(literals.begin(), literals.end()), literals.end());
    if (literals.size() > 64) return Unsupported(where, "more than 64 literal alternatives");
    options.push_back(Literals(literals));
  }
  if (options.size() == 1) return options[0];
  // The JSON type each option starts with decides; two of one type are ambiguous.
  auto kind = [&](int32_t node) -> std::string {
    // A $ref stands as a sequence of one node.
    while (grammar_.nodes(node).sequence().nodes_size() == 1) {
      node = grammar_.nodes(node).sequence().nodes(0);
    }
    const v1::GrammarNode& n = grammar_.nodes(node);
    if (n.has_object()) return "object";
    if (n.has_string()) return "string";
    if (n.has_integer() || n.has_number()) return "number";
    if (n.has_sequence()) return "array";
    if (n.has_choice()) return "any";
    return "literal";
  };
  std::set<std::string> seen;
  for (int32_t o : options) {
    const std::string k = kind(o);
    if (k == "any" || !seen.insert(k).second) {
      return Unsupported(where, absl::StrCat("anyOf/oneOf alternatives must be of different JSON "
                                             "types (two are of type ",
                                             k, ")"));
    }
  }
  for (const std::string& literal : literals) {  // a constant may start like a free value
    const char c = literal[0];
    if ((c == '"' && seen.count("string")) || (c == '{' && seen.count("object")) ||
        (c == '[' && seen.count("array")) ||
        ((c == '-' || (c >= '0' && c <= '9')) && seen.count("number"))) {
      return Unsupported(where, "anyOf/oneOf mixes a constant with a free value of its type");
    }
  }
  return Choice(options);
}

absl::StatusOr<int32_t> GrammarBuilder::Ref(const std::string& ref, const std::string& where,
                                            int depth) {
  if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
  std::string name;
  const Json* defs = nullptr;
  for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
    if (ref.rfind(prefix, 0) == 0 && root_schema_ != nullptr) {
      auto d = root_schema_->find(std::string(prefix).substr(2, std::string(prefix).size() - 3));
      if (d != root_schema_->end() && d->is_object()) defs = &*d;
      name = ref.substr(std::string(prefix).size());
    }
  }
  if (defs == nullptr || !defs->contains(name)) {
    return Unsupported(
        where, absl::StrCat("'$ref' ", ref, " (only #/$defs/NAME and #/definitions/NAME are)"));
  }
  // A sequence of one node stands for the reference, so that it can refer to itself.
  const int32_t placeholder = Add(v1::GrammarNode());
  refs_[ref] = placeholder;
  DSV3_ASSIGN_OR_RETURN(int32_t target, Schema((*defs)[name], ref, depth + 1));
  grammar_.mutable_nodes(placeholder)->mutable_sequence()->add_nodes(target);
  return placeholder;
}

absl::StatusOr<v1::Grammar> JsonSchemaGrammar(const Json& schema) {
  if (schema.dump().size() > GrammarBuilder::kMaxSchemaBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the JSON schema is over ", GrammarBuilder::kMaxSchemaBytes, " bytes"));
  }
  GrammarBuilder builder;
  DSV3_ASSIGN_OR_RETURN(int32_t root, builder.JsonSchema(schema));
  return builder.Build(root);
}

v1::Grammar JsonObjectGrammar() {
  GrammarBuilder builder;
  return builder.Build(builder.AnyObject());
}

}  // namespace dsv3::structured_output
