// Exact equality with the JS reference (@huggingface/tokenizers on the same tokenizer.json) on
// the generated corpus, plus round trips. The reference file comes from the CTest fixture.

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/deepseek_tokenizer.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/unicode_gc_table.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

using testing::DeepSeekTokenizer;
using testing::ReadReferenceFile;

std::vector<nlohmann::json> ReferenceLines() {
  std::vector<nlohmann::json> lines;
  std::istringstream in(ReadReferenceFile("tokenizer_reference.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

// True when node's Unicode is older than the tokenizer's (unicode_gc_table.h, generated with
// a newer node) and the line's text has a code point only the tokenizer's assigns: the reference
// then classifies it as unassigned, so the string is not compared. With the node the table
// was made with (or a newer one) this never happens and every string is compared.
bool NodeUnicodeIsOlderFor(const nlohmann::json& line) {
  static const auto* const unassigned = SplitRegex::Create("\\p{Cn}", false).value().release();
  if (!line.contains("unassigned")) return false;
  for (const uint32_t cp : line["unassigned"].get<std::vector<uint32_t>>()) {
    std::string s;
    AppendCodePoint(cp, &s);
    bool matched = false;
    EXPECT_TRUE(unassigned->ForEachMatch(s, [&](size_t, size_t) { matched = true; }).ok());
    if (!matched) return true;
  }
  return false;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

TEST(JsReferenceTest, EncodeMatchesOnEveryCorpusString) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::vector<nlohmann::json> lines = ReferenceLines();
  int compared = 0, mismatched = 0, older = 0;
  std::map<std::string, int> per_category;
  for (const nlohmann::json& line : lines) {
    if (line["category"] == "decode") continue;
    const std::string text = line["text"].get<std::string>();
    const std::vector<int32_t> expected = line["ids"].get<std::vector<int32_t>>();
    absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(text, {.add_special_tokens = false});
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (NodeUnicodeIsOlderFor(line)) {
      ++older;
      continue;
    }
    ++compared;
    ++per_category[line["category"].get<std::string>()];
    if (*ids != expected && ++mismatched <= 10) {
      ADD_FAILURE() << "[" << line["category"] << "] " << nlohmann::json(text).dump()
                    << "\n  expected " << Show(expected) << "\n  got      " << Show(*ids);
    }
  }
  EXPECT_EQ(mismatched, 0) << "of " << compared << " strings (if node's Unicode is newer than "
                           << kGcTableUnicodeVersion << ", run tokenizer/tools/"
                           << "gen_unicode_gc_table.mjs)";
  EXPECT_GE(compared, 5000);
  for (const auto& [category, n] : per_category) {
    if (category != "edge") {
      EXPECT_GE(n, 100) << category;
    }
  }
  std::printf("compared %d strings with the JS reference: %d mismatches\n", compared, mismatched);
  if (older > 0) {
    std::printf(
        "left out %d strings with characters node's Unicode does not know yet (the "
        "tokenizer's categories are Unicode %s)\n",
        older, kGcTableUnicodeVersion);
  }
}

TEST(JsReferenceTest, BosIsAddedWithSpecialTokens) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  ASSERT_TRUE(tok->bos_id().has_value());
  EXPECT_EQ(*tok->bos_id(), 0);
  for (const nlohmann::json& line : ReferenceLines()) {
    if (line["category"] == "decode") continue;
    const std::string text = line["text"].get<std::string>();
    if (NodeUnicodeIsOlderFor(line)) continue;
    std::vector<int32_t> expected = {*tok->bos_id()};
    for (int32_t id : line["ids"].get<std::vector<int32_t>>()) expected.push_back(id);
    absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_EQ(*ids, expected) << nlohmann::json(text).dump();
  }
}

TEST(JsReferenceTest, DecodeRoundTripsAndMatchesReferenceDecode) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  int round_trips = 0, decodes = 0;
  for (const nlohmann::json& line : ReferenceLines()) {
    const std::vector<int32_t> ids = line["ids"].get<std::vector<int32_t>>();
    absl::StatusOr<std::string> text = tok->Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    // Corpus lines: decode(encode(s)) == s. Decode lines: the reference's decode of random
    // ids, broken UTF-8 included.
    EXPECT_EQ(*text, line["text"].get<std::string>()) << line.dump();
    ++(line["category"] == "decode" ? decodes : round_trips);
  }
  EXPECT_GE(round_trips, 5000);
  EXPECT_GE(decodes, 500);
}

}  // namespace
}  // namespace dsv3::tokenizer
