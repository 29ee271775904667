// Token masks over the real DeepSeek-V3 vocabulary: whatever the logits say (random here,
// as a model with random weights would), the tokens the constraint lets through decode to
// JSON that parses and validates against the schema, also when max_tokens cuts it short.

#include "structured_output/grammar_constraint.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "structured_output/grammar_builder.h"
#include "tests/tokenizer/deepseek_tokenizer.h"

namespace dsv3::structured_output {
namespace {

using Json = nlohmann::ordered_json;

std::shared_ptr<const TokenVocabulary> Vocabulary() {
  static std::shared_ptr<const TokenVocabulary> vocab = [] {
    const tokenizer::Tokenizer* t = tokenizer::testing::DeepSeekTokenizer();
    if (t == nullptr) return std::shared_ptr<const TokenVocabulary>();
    return VocabularyFromTokenizer(*t, 129280, {t->eos_id().value_or(1)});
  }();
  return vocab;
}

struct Output {
  std::string text;
  bool ended = false;  // the end token was chosen
  int tokens = 0;
};

// Greedy over random logits, masked: what a random-weight model would write.
Output Generate(StructuredOutputs& outputs, const v1::Grammar& grammar, int max_tokens,
                uint32_t seed) {
  Output out;
  absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> c = outputs.NewConstraint(grammar);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return out;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  const TokenVocabulary& vocab = *Vocabulary();
  std::vector<float> logits(static_cast<size_t>(vocab.size()));
  for (; out.tokens < max_tokens; ++out.tokens) {
    for (float& l : logits) l = normal(rng);
    absl::Status s = (*c)->Mask(logits, max_tokens - out.tokens);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) break;
    const int32_t token =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_TRUE(std::isfinite(logits[token]));
    EXPECT_TRUE((*c)->Accept(token).ok());
    if (vocab.IsEnd(token)) {
      out.ended = true;
      break;
    }
    out.text += vocab.bytes(token);
  }
  return out;
}

TEST(GrammarConstraintTest, RandomLogitsStillGiveJsonThatValidates) {
  ASSERT_NE(Vocabulary(), nullptr);
  StructuredOutputs outputs(Vocabulary());
  const Json schema = Json::parse(R"({
    "type": "object",
    "properties": {
      "city": {"type": "string", "maxLength": 12},
      "days": {"type": "integer", "minimum": 1, "maximum": 14},
      "unit": {"enum": ["celsius", "fahrenheit"]},
      "hourly": {"type": "boolean"},
      "notes": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3}
    },
    "required": ["city", "days", "unit"]})");
  absl::StatusOr<v1::Grammar> grammar = JsonSchemaGrammar(schema);
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    Output out = Generate(outputs, *grammar, 200, seed);
    ASSERT_TRUE(out.ended) << out.text;
    Json j = Json::parse(out.text, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << out.text;
    ASSERT_TRUE(j["city"].is_string()) << out.text;
    EXPECT_LE(j["city"].get<std::string>().size(), 12u * 4) << out.text;
    ASSERT_TRUE(j["days"].is_number_integer()) << out.text;
    EXPECT_GE(j["days"].get<int>(), 1);
    EXPECT_LE(j["days"].get<int>(), 14);
    EXPECT_TRUE(j["unit"] == "celsius" || j["unit"] == "fahrenheit") << out.text;
    if (j.contains("hourly")) {
      EXPECT_TRUE(j["hourly"].is_boolean());
    }
    if (j.contains("notes")) {
      EXPECT_LE(j["notes"].size(), 3u);
    }
  }
}

TEST(GrammarConstraintTest, AnOutputCutByMaxTokensStillParses) {
  ASSERT_NE(Vocabulary(), nullptr);
  StructuredOutputs outputs(Vocabulary());
  // Free strings and free-form objects: left alone, a random model would not stop.
  const v1::Grammar any_object = JsonObjectGrammar();
  absl::StatusOr<v1::Grammar> strings = JsonSchemaGrammar(Json::parse(
      R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"array"}},
          "required":["a","b"]})"));
  ASSERT_TRUE(strings.ok());
  for (const v1::Grammar* g : std::vector<const v1::Grammar*>{&any_object, &*strings}) {
    for (int max_tokens : {12, 30, 64}) {
      Output out = Generate(outputs, *g, max_tokens, static_cast<uint32_t>(max_tokens));
      EXPECT_LE(out.tokens, max_tokens);
      Json j = Json::parse(out.text, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << max_tokens << ": " << out.text;
      EXPECT_TRUE(j.is_object()) << out.text;
    }
  }
}

TEST(GrammarConstraintTest, TheMaskIsExactlyTheTokensThatContinueTheGrammar) {
  ASSERT_NE(Vocabulary(), nullptr);
  const TokenVocabulary& vocab = *Vocabulary();
  absl::StatusOr<v1::Grammar> g = JsonSchemaGrammar(Json::parse(R"({"enum": ["yes", "no"]})"));
  ASSERT_TRUE(g.ok());
  auto compiled = CompiledGrammar::Compile(*g);
  ASSERT_TRUE(compiled.ok());
  std::vector<uint64_t> mask = ComputeTokenMask(**compiled, vocab, (*compiled)->Start());
  int allowed = 0;
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const bool in = (mask[id / 64] >> (id % 64)) & 1;
    const std::string& b = vocab.bytes(id);
    // Every prefix of "yes" or "no" in quotes, and nothing else.
    const bool expected =
        !b.empty() && !vocab.IsEnd(id) &&
        (std::string("\"yes\"").rfind(b, 0) == 0 || std::string("\"no\"").rfind(b, 0) == 0);
    EXPECT_EQ(in, expected) << id << " '" << b << "'";
    allowed += in;
  }
  EXPECT_GE(allowed, 1);  // at least the opening quote
}

TEST(GrammarConstraintTest, ATokenOutsideTheGrammarFailsTheConstraint) {
  ASSERT_NE(Vocabulary(), nullptr);
  StructuredOutputs outputs(Vocabulary());
  auto c = outputs.NewConstraint(JsonObjectGrammar());
  ASSERT_TRUE(c.ok());
  const tokenizer::Tokenizer* t = tokenizer::testing::DeepSeekTokenizer();
  absl::StatusOr<std::vector<int32_t>> ids = t->Encode("hello", {.add_special_tokens = false});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*c)->Accept((*ids)[0]).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> logits(static_cast<size_t>(Vocabulary()->size()), 0.0f);
  EXPECT_FALSE((*c)->Mask(logits, 10).ok());  // the request ends; no token is made up
  v1::Grammar broken;
  broken.add_nodes()->mutable_sequence()->add_nodes(5);
  EXPECT_EQ(outputs.NewConstraint(broken).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsv3::structured_output
