#include "tokenizer/utf8.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tokenizer/deepseek_tokenizer.h"
#include "tests/tokenizer/tiny_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::tokenizer {
namespace {

using ::testing::HasSubstr;

std::string Lossy(const std::string& bytes) {
  std::string out;
  AppendUtf8Lossy(bytes, &out);
  return out;
}

TEST(Utf8Test, ValidateNamesTheByteOffset) {
  EXPECT_TRUE(ValidateUtf8("plain ascii, 中文, 😀").ok());
  struct Case {
    std::string text;
    int offset;
  };
  for (const Case& c : {Case{"ab\xFF", 2}, Case{"\x80", 0}, Case{"abc\xC3", 3},
                        Case{"\xE4\xB8\xADx\xE4\xB8", 4}, Case{"12345678\xC0\xAF", 8},
                        Case{"\xED\xA0\x80", 0} /* surrogate */, Case{"\xF4\x90\x80\x80", 0},
                        Case{"\xE0\x80\xAF", 0} /* overlong */, Case{"okokokokokokok\xF8", 14}}) {
    absl::Status s = ValidateUtf8(c.text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("byte offset " + std::to_string(c.offset)))
        << s;
  }
}

TEST(Utf8Test, LossyReplacesEachMaximalSubpart) {
  EXPECT_EQ(Lossy("a\xE4\xB8z"), "a\uFFFDz");              // one truncated sequence -> one U+FFFD
  EXPECT_EQ(Lossy("\xFF\xFE"), "\uFFFD\uFFFD");            // two invalid bytes -> two
  EXPECT_EQ(Lossy("\xE0\x80"), "\uFFFD\uFFFD");            // E0 80 is not a valid prefix
  EXPECT_EQ(Lossy("\xF0\x9F\x98"), "\uFFFD");              // truncated 4-byte sequence
  EXPECT_EQ(Lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogates are three subparts
  EXPECT_EQ(Lossy("ok \xF0\x9F\x98\x80"), "ok 😀");
}

TEST(Utf8Test, IncompleteTail) {
  EXPECT_EQ(IncompleteTailLength("abc"), 0u);
  EXPECT_EQ(IncompleteTailLength("a\xE4"), 1u);
  EXPECT_EQ(IncompleteTailLength("a\xE4\xB8"), 2u);
  EXPECT_EQ(IncompleteTailLength("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(IncompleteTailLength("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteTailLength("\xE4\xB8\xAD\x80"), 0u);  // stray continuation: not held
  EXPECT_EQ(IncompleteTailLength("\xE0\x80"), 0u);          // can never complete
  EXPECT_EQ(IncompleteTailLength("\xFF"), 0u);
}

TEST(Utf8Test, EncodeRejectsInvalidUtf8WithOffset) {
  auto tok = Tokenizer::FromJson(testing::TinyTokenizerJson({}).dump(), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode("hello \xC3\x28 world");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("byte offset 6"));
}

TEST(Utf8Test, DeepSeekEncodeRejectsInvalidUtf8WithOffset) {
  const Tokenizer* tok = testing::DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  for (const auto& [text, offset] :
       {std::pair<std::string, int>{"\xFF", 0}, {"你好\xE4\xBD", 6}, {"<｜User｜>\x80", 12}}) {
    absl::Status s = tok->Encode(text).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("byte offset " + std::to_string(offset)));
  }
}

}  // namespace
}  // namespace dsv3::tokenizer
