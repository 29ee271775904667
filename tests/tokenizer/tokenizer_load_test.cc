// Loading: the tiny tokenizer works; every unsupported model/option fails with a clear status
// instead of tokenizing wrongly.

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tokenizer/tiny_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::tokenizer {
namespace {

using ::testing::HasSubstr;
using testing::TinyTokenizerJson;

absl::Status LoadStatus(const nlohmann::json& j, const std::string& config = "") {
  return Tokenizer::FromJson(j.dump(), config).status();
}

TEST(TokenizerLoadTest, TinyTokenizerLoadsAndEncodes) {
  auto tok = Tokenizer::FromJson(TinyTokenizerJson({{"a", "b"}, {"ab", "c"}}).dump(), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("abc ab<user>x");
  ASSERT_TRUE(ids.ok()) << ids.status();
  // "abc" -> 257; " ab" is one word whose space (id 32) has no merge with "ab" (256).
  EXPECT_EQ(*ids, (std::vector<int32_t>{257, 32, 256, 1001, 'x'}));
  EXPECT_EQ((*tok)->Decode(*ids).value(), "abc ab<user>x");
}

TEST(TokenizerLoadTest, RejectsOtherModelTypes) {
  for (const char* type : {"Unigram", "WordPiece", "WordLevel"}) {
    nlohmann::json j = TinyTokenizerJson({});
    j["model"]["type"] = type;
    absl::Status s = LoadStatus(j);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << type;
    EXPECT_THAT(std::string(s.message()), HasSubstr(type));
  }
}

TEST(TokenizerLoadTest, RejectsUnsupportedBpeOptions) {
  nlohmann::json j = TinyTokenizerJson({});
  j["model"]["dropout"] = 0.1;
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);
  j = TinyTokenizerJson({});
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);
  j = TinyTokenizerJson({});
  j["model"]["vocab"].erase("a");  // not a full byte-level alphabet any more
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);
}

TEST(TokenizerLoadTest, RejectsUnknownPreTokenizersNormalizersDecoders) {
  nlohmann::json j = TinyTokenizerJson({});
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  absl::Status s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("Metaspace"));

  j = TinyTokenizerJson({});
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithPrevious";
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);

  j = TinyTokenizerJson({});
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);

  j = TinyTokenizerJson({});
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);

  j = TinyTokenizerJson({});
  j["pre_tokenizer"] = nullptr;  // no ByteLevel step at all
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);

  j = TinyTokenizerJson({});
  j["normalizer"] = {{"type", "NFC"}};
  s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("NFC"));

  j = TinyTokenizerJson({});
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);

  j = TinyTokenizerJson({});
  j["added_tokens"][0]["single_word"] = true;
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kUnimplemented);
}

TEST(TokenizerLoadTest, RejectsMalformedFiles) {
  EXPECT_EQ(Tokenizer::FromJson("{not json", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  nlohmann::json j = TinyTokenizerJson({});
  j["model"]["merges"].push_back("zz qq");  // tokens not in the vocab
  EXPECT_EQ(LoadStatus(j).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tokenizer::Load("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(
      LoadStatus(TinyTokenizerJson({}), R"({"bos_token": "<nope>", "add_bos_token": true})").code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLoadTest, BosAndEosFollowTokenizerConfig) {
  const nlohmann::json j = TinyTokenizerJson({});
  auto tok =
      Tokenizer::FromJson(j.dump(), R"({"bos_token": "<bos>", "eos_token": {"content": "<user>"},
                    "add_bos_token": true, "add_eos_token": true})");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("a").value(), (std::vector<int32_t>{1000, 'a', 1001}));
  EXPECT_EQ((*tok)->Encode("a", {.add_special_tokens = false}).value(),
            (std::vector<int32_t>{'a'}));
  // Special-token text is matched with or without add_special_tokens.
  EXPECT_EQ((*tok)->Encode("<bos>", {.add_special_tokens = false}).value(),
            (std::vector<int32_t>{1000}));
  EXPECT_EQ((*tok)->Decode({1000, 'a', 1001}, {.skip_special_tokens = true}).value(), "a<user>");
  EXPECT_EQ((*tok)->Decode({1000, 'a'}).value(), "<bos>a");
  EXPECT_EQ((*tok)->Decode({5000}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tok)->Decode({-1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLoadTest, LstripRstripSwallowWhitespace) {
  nlohmann::json j = TinyTokenizerJson({});
  j["added_tokens"][1]["lstrip"] = true;
  j["added_tokens"][1]["rstrip"] = true;
  auto tok = Tokenizer::FromJson(j.dump(), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("a \t<user>\n b").value(), (std::vector<int32_t>{'a', 1001, 'b'}));
}

TEST(TokenizerLoadTest, MergesApplyLowestRankFirstAndLeftmostOnTies) {
  // "aaa": merge "a a" (rank 0) applies to the leftmost pair first -> "aa" + "a".
  auto tok = Tokenizer::FromJson(
      TinyTokenizerJson({{"a", "a"}, {"b", "c"}, {"ab", "c"}, {"a", "b"}}).dump(), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("aaa").value(), (std::vector<int32_t>{256, 'a'}));
  // "abc": "b c" (rank 1) beats "a b" (rank 3): a + bc; "ab c" never applies.
  EXPECT_EQ((*tok)->Encode("abc").value(), (std::vector<int32_t>{'a', 257}));
}

TEST(TokenizerLoadTest, LongWordsMergeLikeShortOnes) {
  // Words past the scan threshold take the heap path; both must agree.
  auto tok = Tokenizer::FromJson(
      TinyTokenizerJson({{"a", "b"}, {"ab", "ab"}, {"abab", "abab"}, {"b", "a"}, {"a", "a"}})
          .dump(),
      "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const std::string unit : {"ab", "aab", "aba", "abb", "a"}) {
    std::string word;
    for (int n = 1; n < 200; ++n) {
      word += unit;
      // Reference: a naive quadratic BPE over the same five merges.
      std::vector<std::string> symbols;
      for (char c : word) symbols.push_back(std::string(1, c));
      for (;;) {
        int best = -1, best_rank = 1 << 30;
        for (size_t i = 0; i + 1 < symbols.size(); ++i) {
          int rank = -1;
          if (symbols[i] == "a" && symbols[i + 1] == "b") rank = 0;
          if (symbols[i] == "ab" && symbols[i + 1] == "ab") rank = 1;
          if (symbols[i] == "abab" && symbols[i + 1] == "abab") rank = 2;
          if (symbols[i] == "b" && symbols[i + 1] == "a") rank = 3;
          if (symbols[i] == "a" && symbols[i + 1] == "a") rank = 4;
          if (rank >= 0 && rank < best_rank) best_rank = rank, best = static_cast<int>(i);
        }
        if (best < 0) break;
        symbols[best] += symbols[best + 1];
        symbols.erase(symbols.begin() + best + 1);
      }
      auto ids = (*tok)->Encode(word, {.add_special_tokens = false});
      ASSERT_TRUE(ids.ok());
      ASSERT_EQ(ids->size(), symbols.size()) << unit << " x" << n;
      for (size_t i = 0; i < symbols.size(); ++i) {
        ASSERT_EQ((*tok)->Decode({(*ids)[i]}).value(), symbols[i])
            << unit << " x" << n << " @" << i;
      }
    }
  }
}

}  // namespace
}  // namespace dsv3::tokenizer
