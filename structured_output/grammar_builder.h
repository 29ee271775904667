#ifndef DSV3_STRUCTURED_OUTPUT_GRAMMAR_BUILDER_H_
#define DSV3_STRUCTURED_OUTPUT_GRAMMAR_BUILDER_H_

// Builds dsv3.v1.Grammar graphs node by node (each call returns the new node's index),
// and from JSON Schemas: the structured outputs of `response_format` and the arguments of
// forced tool calls. JSON is generated compact (no whitespace) with object properties in
// the schema's order; an optional property may be left out.
//
// Supported schema keywords: type (one or a list), properties, required,
// additionalProperties, items, minItems, maxItems, enum, const, anyOf / oneOf (alternatives
// of different JSON types, or literals), minLength, maxLength, minimum / maximum and the
// exclusive forms on integers, $ref to #/$defs/... or #/definitions/... (recursion allowed),
// and the annotations (title, description, default, examples, $schema, $id, $comment).
// Anything else is INVALID_ARGUMENT naming the keyword and where it is: never ignored.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dsv3/v1/common.pb.h"
#include "nlohmann/json.hpp"

namespace dsv3::structured_output {

class GrammarBuilder {
 public:
  int32_t Literals(const std::vector<std::string>& values);
  int32_t Sequence(const std::vector<int32_t>& nodes);
  int32_t Choice(const std::vector<int32_t>& nodes);
  int32_t Branch(const std::vector<std::string>& keys, const std::vector<int32_t>& next);
  int32_t Repeat(int32_t item, const std::string& separator, int32_t min, int32_t max /*<0: none*/);
  int32_t String(int32_t min_length = 0, int32_t max_length = -1 /*none*/);
  int32_t Number();
  // Any JSON value (one node, built once).
  int32_t AnyValue();
  // Any JSON object.
  int32_t AnyObject();

  // The node matching `schema` (a JSON Schema; ordered_json keeps the properties' order).
  absl::StatusOr<int32_t> JsonSchema(const nlohmann::ordered_json& schema);

  v1::Grammar Build(int32_t root) const;

  // Most bytes of JSON Schema text accepted.
  static constexpr size_t kMaxSchemaBytes = 64 * 1024;

 private:
  int32_t Add(v1::GrammarNode node);
  absl::StatusOr<int32_t> Schema(const nlohmann::ordered_json& schema, const std::string& where,
                                 int depth);
  absl::StatusOr<int32_t> Typed(const nlohmann::ordered_json& schema, const std::string& type,
                                const std::string& where, int depth);
  absl::StatusOr<int32_t> Object(const nlohmann::ordered_json& schema, const std::string& where,
                                 int depth);
  absl::StatusOr<int32_t> Array(const nlohmann::ordered_json& schema, const std::string& where,
                                int depth);
  absl::StatusOr<int32_t> Integer(const nlohmann::ordered_json& schema, const std::string& where);
  absl::StatusOr<int32_t> AnyOf(const std::vector<int32_t>& alternatives, const std::string& where);
  absl::StatusOr<int32_t> Ref(const std::string& ref, const std::string& where, int depth);

  v1::Grammar grammar_;
  int32_t any_value_ = -1;
  int32_t any_object_ = -1;
  const nlohmann::ordered_json* root_schema_ = nullptr;
  std::map<std::string, int32_t> refs_;
};

// response_format {"type": "json_schema"}: the schema's grammar. {"type": "json_object"}:
// any JSON object. INVALID_ARGUMENT for what is not supported.
absl::StatusOr<v1::Grammar> JsonSchemaGrammar(const nlohmann::ordered_json& schema);
v1::Grammar JsonObjectGrammar();

}  // namespace dsv3::structured_output

#endif  // DSV3_STRUCTURED_OUTPUT_GRAMMAR_BUILDER_H_
