// The grammar matcher and the JSON Schema compiler: what a schema lets through, byte by
// byte, and what it refuses (with the reason named).

#include <fstream>
#include <iterator>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "structured_output/grammar_builder.h"
#include "structured_output/grammar_matcher.h"

namespace dsv3::structured_output {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

std::shared_ptr<const CompiledGrammar> CompileSchema(const std::string& schema) {
  absl::StatusOr<v1::Grammar> g = JsonSchemaGrammar(Json::parse(schema));
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return nullptr;
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::Compile(*g);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

// Whether the whole of `text` is an output of the grammar.
bool Matches(const CompiledGrammar& g, const std::string& text) {
  MatchState s = g.Start();
  for (char c : text) {
    if (!g.Advance(s, static_cast<uint8_t>(c))) return false;
  }
  return g.CanEnd(s);
}

// Whether `text` can be continued to an output (every byte accepted).
bool Prefix(const CompiledGrammar& g, const std::string& text) {
  MatchState s = g.Start();
  for (char c : text) {
    if (!g.Advance(s, static_cast<uint8_t>(c))) return false;
  }
  return true;
}

constexpr char kPerson[] = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 5},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    "ok": {"type": "boolean"}
  },
  "required": ["name", "age"],
  "additionalProperties": false
})";

TEST(JsonSchemaGrammarTest, ObjectsKeepTheSchemasOrderAndRequiredProperties) {
  auto g = CompileSchema(kPerson);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(*g, R"({"name":"bob","age":42})"));
  EXPECT_TRUE(Matches(*g, R"({"name":"","age":0,"tags":["a","b"],"ok":true})"));
  EXPECT_TRUE(Matches(*g, R"({"name":"x","age":150,"ok":false})"));
  EXPECT_FALSE(Matches(*g, R"({"age":42,"name":"bob"})"));    // order
  EXPECT_FALSE(Matches(*g, R"({"name":"bob"})"));             // a required one missing
  EXPECT_FALSE(Matches(*g, R"({"name":"bobbie","age":1})"));  // maxLength
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":151})"));     // maximum
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":-1})"));      // minimum
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":01})"));      // leading zero
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":1,"tags":["a","b","a"]})"));  // maxItems
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":1,"tags":["c"]})"));          // enum
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":1,"x":1})"));                 // not a property
  EXPECT_FALSE(Matches(*g, R"({ "name":"b","age":1})"));                      // no whitespace
  EXPECT_FALSE(Matches(*g, R"({"name":"b","age":1)"));                        // not closed
  EXPECT_TRUE(Prefix(*g, R"({"name":"b","age":1)"));
}

TEST(JsonSchemaGrammarTest, IntegerBoundsRefuseADigitNoValueInRangeStartsWith) {
  auto g = CompileSchema(R"({"type": "integer", "minimum": 50, "exclusiveMaximum": 100})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(*g, "50"));
  EXPECT_TRUE(Matches(*g, "99"));
  EXPECT_FALSE(Prefix(*g, "1"));  // 1x < 50 and 1xx > 99
  EXPECT_FALSE(Prefix(*g, "-"));
  EXPECT_FALSE(Matches(*g, "5"));
  EXPECT_FALSE(Matches(*g, "100"));
  auto negative = CompileSchema(R"({"type": "integer", "minimum": -20, "maximum": -3})");
  ASSERT_NE(negative, nullptr);
  EXPECT_TRUE(Matches(*negative, "-20"));
  EXPECT_TRUE(Matches(*negative, "-3"));
  EXPECT_FALSE(Matches(*negative, "-2"));
  EXPECT_FALSE(Matches(*negative, "-21"));
  EXPECT_FALSE(Matches(*negative, "3"));
}

TEST(JsonSchemaGrammarTest, StringsAreValidJsonAndValidUtf8) {
  auto g = CompileSchema(R"({"type": "string", "minLength": 2})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(*g, R"("a\"\\\n\u00e9")"));
  EXPECT_TRUE(Matches(*g, "\"h\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""));  // é € 😀
  EXPECT_FALSE(Matches(*g, R"("a")"));                                    // minLength
  EXPECT_FALSE(Prefix(*g, "\"a\x01"));                                    // control byte
  EXPECT_FALSE(Prefix(*g, "\"a\xC0\x80"));                                // overlong
  EXPECT_FALSE(Prefix(*g, "\"a\xED\xA0\x80"));                            // surrogate
  EXPECT_FALSE(Prefix(*g, "\"a\xF5"));                                    // > U+10FFFF
  EXPECT_FALSE(Prefix(*g, R"("a\ud800)"));                                // lone surrogate
  EXPECT_FALSE(Prefix(*g, R"("a\x)"));                                    // no such escape
}

TEST(JsonSchemaGrammarTest, NumbersFollowJsonsGrammar) {
  auto g = CompileSchema(R"({"type": "number"})");
  ASSERT_NE(g, nullptr);
  for (const char* ok : {"0", "-0", "12.5", "-0.5e+10", "3E7", "1e-3"}) {
    EXPECT_TRUE(Matches(*g, ok)) << ok;
  }
  for (const char* bad : {"01", "1.", ".5", "-", "1e", "+1", "1e1234"}) {
    EXPECT_FALSE(Matches(*g, bad)) << bad;
  }
}

TEST(JsonSchemaGrammarTest, AnyOfTypeListsConstAndNullable) {
  auto g = CompileSchema(R"({"anyOf": [{"type": "string"}, {"type": "null"}, {"const": 7}]})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(*g, R"("x")"));
  EXPECT_TRUE(Matches(*g, "null"));
  EXPECT_TRUE(Matches(*g, "7"));
  EXPECT_FALSE(Matches(*g, "8"));
  auto list = CompileSchema(R"({"type": ["integer", "boolean"]})");
  ASSERT_NE(list, nullptr);
  EXPECT_TRUE(Matches(*list, "true"));
  EXPECT_TRUE(Matches(*list, "-4"));
  EXPECT_FALSE(Matches(*list, "1.5"));
}

TEST(JsonSchemaGrammarTest, RecursiveReferencesAndFreeFormObjects) {
  auto tree = CompileSchema(R"({
    "$defs": {"node": {"type": "object",
                       "properties": {"v": {"type": "integer"},
                                      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                       "required": ["v"]}},
    "$ref": "#/$defs/node"})");
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(Matches(*tree, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]})"));
  EXPECT_FALSE(Matches(*tree, R"({"v":1,"kids":[{"kids":[]}]})"));
  auto any = CompileSchema(R"({"type": "object"})");
  ASSERT_NE(any, nullptr);
  EXPECT_TRUE(Matches(*any, R"({"a":[1,{"b":null},"c"],"d":{}})"));
  EXPECT_TRUE(Matches(*any, "{}"));
  EXPECT_FALSE(Matches(*any, "[]"));
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> object =
      CompiledGrammar::Compile(JsonObjectGrammar());
  ASSERT_TRUE(object.ok()) << object.status();
  EXPECT_TRUE(Matches(**object, R"({"k":true})"));
  EXPECT_FALSE(Matches(**object, "1"));
}

TEST(JsonSchemaGrammarTest, WhatIsNotSupportedIsRefusedByName) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "string", "pattern": "^a"})", "'pattern'"},
      {R"({"type": "string", "format": "email"})", "'format'"},
      {R"({"type": "number", "minimum": 0})", "'minimum'"},
      {R"({"$ref": "https://example.com/s.json"})", "$ref"},
      {R"({"anyOf": [{"type": "object"}, {"type": "object", "properties": {"a": {}}}]})",
       "different JSON types"},
      {R"({"type": "object", "required": ["x"]})", "without a schema: x"},
      {R"({"type": "frobnicate"})", "unknown type"},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", "no integer"},
  };
  for (const auto& [schema, why] : cases) {
    absl::StatusOr<v1::Grammar> g = JsonSchemaGrammar(Json::parse(schema));
    ASSERT_FALSE(g.ok()) << schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(g.status().message(), HasSubstr(why)) << schema;
  }
}

TEST(GrammarMatcherTest, MalformedWireGrammarsAreRefused) {
  v1::Grammar empty;
  EXPECT_FALSE(CompiledGrammar::Compile(empty).ok());
  GrammarBuilder b;
  const int32_t bad_ref = b.Sequence({7});
  EXPECT_THAT(CompiledGrammar::Compile(b.Build(bad_ref)).status().message(),
              HasSubstr("does not exist"));
  GrammarBuilder loop;
  v1::Grammar g = loop.Build(loop.Sequence({0}));  // refers to itself, never ends
  EXPECT_THAT(CompiledGrammar::Compile(g).status().message(), HasSubstr("never end"));
  GrammarBuilder prefix;
  const int32_t s = prefix.String();
  v1::Grammar p = prefix.Build(prefix.Branch({"ab", "abc"}, {s, s}));
  EXPECT_THAT(CompiledGrammar::Compile(p).status().message(), HasSubstr("prefix"));
  GrammarBuilder clash;
  v1::Grammar c = clash.Build(clash.Choice({clash.String(), clash.String(1)}));
  EXPECT_THAT(CompiledGrammar::Compile(c).status().message(), HasSubstr("same byte"));
}

// Found by the fuzzer (ASan): compiling a repeat's separator appended a node while a
// reference into the node list was held.
TEST(GrammarMatcherTest, RepeatsWithSeparatorsAmongManyNodesCompile) {
  GrammarBuilder b;
  std::vector<int32_t> items;
  for (int i = 0; i < 40; ++i) items.push_back(b.Repeat(b.Literals({"ab"}), ",", 1, 3));
  const int32_t root = b.Sequence(items);
  auto g = CompiledGrammar::Compile(b.Build(root));
  ASSERT_TRUE(g.ok()) << g.status();
  std::string text;
  for (int i = 0; i < 40; ++i) text += i % 2 ? "ab,ab" : "ab";
  EXPECT_TRUE(Matches(**g, text));
  EXPECT_FALSE(Matches(**g, text + ",ab,ab"));
}

TEST(GrammarMatcherTest, DeepNestingIsRefusedNotStored) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g =
      CompiledGrammar::Compile(JsonObjectGrammar());
  ASSERT_TRUE(g.ok());
  std::string deep = "{\"a\":";
  for (size_t i = 0; i < CompiledGrammar::kMaxDepth; ++i) deep += "[";
  EXPECT_FALSE(Prefix(**g, deep));
}

TEST(GrammarMatcherTest, MinRemainingBytesIsTheShortestWayToTheEnd) {
  auto g = CompileSchema(kPerson);
  ASSERT_NE(g, nullptr);
  const std::pair<const char*, int64_t> cases[] = {
      {"", static_cast<int64_t>(std::string(R"({"name":"","age":0})").size())},
      {R"({"name":"b)", static_cast<int64_t>(std::string(R"(","age":0})").size())},
      {R"({"name":"b","age":1)", 1},
      {R"({"name":"b","age":1,"tags":[)", 2},
      {R"({"name":"b","age":1,"ok":t)", 4},
  };
  for (const auto& [prefix, expected] : cases) {
    MatchState s = g->Start();
    for (char c : std::string(prefix)) ASSERT_TRUE(g->Advance(s, static_cast<uint8_t>(c)));
    EXPECT_EQ(g->MinRemainingBytes(s), expected) << prefix;
  }
}

// A wire grammar the fuzzer found (tests/fuzz/structured_output/, replayed there too): a
// repeat of 24 whose item cannot end made the shortest-completion count overflow (24 x the
// "unreachable" count) instead of saturating: UBSan's report in the sanitizer build, a negative
// count here.
TEST(GrammarMatcherTest, CountsOfUnreachableItemsSaturate) {
  std::ifstream in(std::string(DSV3_SOURCE_DIR) +
                       "/tests/fuzz/structured_output/regression-saturating-mul-overflow",
                   std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(bytes.empty());
  v1::Grammar grammar;
  ASSERT_TRUE(grammar.ParseFromString(bytes));
  auto compiled = CompiledGrammar::Compile(grammar);
  if (!compiled.ok()) {
    EXPECT_EQ(compiled.status().code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  MatchState state = (*compiled)->Start();
  EXPECT_GE((*compiled)->MinRemainingBytes(state), 0);
  for (char c : bytes) {
    if (!(*compiled)->Advance(state, static_cast<uint8_t>(c))) break;
    EXPECT_GE((*compiled)->MinRemainingBytes(state), 0);
  }
}

}  // namespace
}  // namespace dsv3::structured_output
