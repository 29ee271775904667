#include "tokenizer/stream_detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/tokenizer/deepseek_tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

using testing::DeepSeekTokenizer;

// Streams `ids`, checking every delta is valid UTF-8, and returns the concatenation.
std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids,
                   const DecodeOptions& options = {}) {
  StreamDetokenizer stream(tok, options);
  std::string all;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> delta = stream.Add(id);
    EXPECT_TRUE(delta.ok()) << delta.status();
    if (!delta.ok()) return all;
    EXPECT_TRUE(ValidateUtf8(*delta).ok()) << "broken delta after id " << id;
    all += *delta;
  }
  const std::string tail = stream.Finish();
  EXPECT_TRUE(ValidateUtf8(tail).ok());
  EXPECT_EQ(stream.pending_bytes(), 0u);
  return all + tail;
}

TEST(StreamDetokenizerTest, HoldsBackSplitCharacters) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  // "😀" is several byte tokens in DeepSeek-V3; nothing may come out until it is complete.
  const std::vector<int32_t> ids = tok->Encode("😀!", {.add_special_tokens = false}).value();
  ASSERT_GE(ids.size(), 2u);
  StreamDetokenizer stream(*tok);
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string delta = stream.Add(ids[i]).value();
    if (out.empty() && !delta.empty()) {
      EXPECT_EQ(delta.substr(0, 4), "😀");
    }
    out += delta;
  }
  EXPECT_EQ(out + stream.Finish(), "😀!");
}

TEST(StreamDetokenizerTest, DeltasConcatenateToFullDecodeOnTextIds) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  for (const std::string text :
       {"Hello, world! 你好，世界。こんにちは 👨‍👩‍👧‍👦 e\u0301 \r\n  x",
        "<｜User｜>hi<｜Assistant｜>", "🇯🇵🏳️‍🌈 ١٢٣ ﬁ",
        "  leading and trailing  "}) {
    const std::vector<int32_t> ids = tok->Encode(text).value();
    EXPECT_EQ(Stream(*tok, ids), tok->Decode(ids).value()) << text;
    EXPECT_EQ(Stream(*tok, ids, {.skip_special_tokens = true}),
              tok->Decode(ids, {.skip_special_tokens = true}).value());
  }
}

TEST(StreamDetokenizerTest, DeltasConcatenateToFullDecodeOnRandomIds) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  std::mt19937 rng(1234);
  // Bias towards the byte tokens (ids below ~300 include single bytes) so that partial and
  // ill-formed sequences are frequent; include special tokens too.
  std::uniform_int_distribution<int32_t> any(0, tok->IdLimit() - 1), low(0, 400);
  std::uniform_int_distribution<int> coin(0, 9);
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> ids;
    const int n = 1 + round % 40;
    while (static_cast<int>(ids.size()) < n) {
      const int32_t id = coin(rng) < 5 ? low(rng) : any(rng);
      if (tok->TokenBytes(id, {}).ok()) ids.push_back(id);
    }
    for (const bool skip : {false, true}) {
      const DecodeOptions options{.skip_special_tokens = skip};
      ASSERT_EQ(Stream(*tok, ids, options), tok->Decode(ids, options).value()) << round;
    }
  }
}

TEST(StreamDetokenizerTest, UnknownIdIsAnErrorAndLeavesTheStreamIntact) {
  const Tokenizer* tok = DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  StreamDetokenizer stream(*tok);
  const std::vector<int32_t> ids = tok->Encode("é", {.add_special_tokens = false}).value();
  std::string out;
  for (int32_t id : ids) out += stream.Add(id).value();
  EXPECT_EQ(stream.Add(tok->IdLimit() + 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out + stream.Finish(), "é");
}

}  // namespace
}  // namespace dsv3::tokenizer
