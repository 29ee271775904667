// The pre-tokenizer regex: Oniguruma -> PCRE2 translation, and General_Category properties
// brought from PCRE2's Unicode tables (Unicode 14 on Debian 12) to the JS reference's (node's)
// through unicode_gc_table.h.

#include "tokenizer/split_regex.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/tokenizer/deepseek_tokenizer.h"
#include "tokenizer/unicode_gc_table.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

std::string Utf8(uint32_t cp) {
  std::string s;
  AppendCodePoint(cp, &s);
  return s;
}

std::vector<std::pair<size_t, size_t>> Matches(const SplitRegex& re, absl::string_view text,
                                               bool has_gc_table_code_point) {
  std::vector<std::pair<size_t, size_t>> matches;
  EXPECT_TRUE(re.ForEachMatch(text, has_gc_table_code_point, [&](size_t start, size_t end) {
                  matches.emplace_back(start, end);
                }).ok());
  return matches;
}

// True when `pattern` matches all of `text` in one match.
bool MatchesWhole(absl::string_view pattern, absl::string_view text) {
  absl::StatusOr<std::unique_ptr<SplitRegex>> re = SplitRegex::Create(pattern, false);
  EXPECT_TRUE(re.ok()) << re.status();
  if (!re.ok()) return false;
  const auto matches = Matches(**re, text, HasGcTableCodePoint(text));
  return matches.size() == 1 && matches[0].first == 0 && matches[0].second == text.size();
}

TEST(SplitRegexTest, TableIsSortedAndDisjoint) {
  const absl::Span<const GcRange> table = GcTable();
  ASSERT_FALSE(table.empty());
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_LE(table[i].first, table[i].last);
    if (i > 0) {
      EXPECT_LT(table[i - 1].last, table[i].first);
    }
  }
  EXPECT_LE(table.back().last, 0x10FFFFu);
  // PCRE2 must not be older than the table's base: code points it misses since would be
  // missing from the table (regenerate with tokenizer/tools/gen_unicode_gc_table.mjs).
  char pcre2_unicode[32] = {};
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, pcre2_unicode);
  int major = 0, minor = 0, base_major = 0, base_minor = 0;
  ASSERT_EQ(std::sscanf(pcre2_unicode, "%d.%d", &major, &minor), 2);
  ASSERT_EQ(std::sscanf(kGcTableBaseUnicodeVersion, "%d.%d", &base_major, &base_minor), 2);
  EXPECT_GE(major * 100 + minor, base_major * 100 + base_minor) << pcre2_unicode;
}

TEST(SplitRegexTest, PatternsWithoutCategoriesTranslateAsBefore) {
  EXPECT_EQ(TranslateOnigurumaPattern("[A-Za-z]+|'s").value(), "[A-Za-z]+|'s");
  EXPECT_EQ(TranslateOnigurumaPattern("\\p{Han}+").value(), "\\p{Han}+");  // a script
  EXPECT_EQ(TranslateOnigurumaPattern("[^\\p{L}\\d]", /*update_categories=*/false).value(),
            "[^\\p{L}\\p{Nd}]");
  EXPECT_EQ(TranslateOnigurumaPattern("\\w").status().code(), absl::StatusCode::kUnimplemented);
}

TEST(SplitRegexTest, NewCharactersJoinTheirCategory) {
  const std::string wireless = Utf8(0x1F6DC);   // So, Unicode 15
  const std::string kawi_a = Utf8(0x11F04);     // Lo, Unicode 15
  const std::string kawi_zero = Utf8(0x11F50);  // Nd, Unicode 15
  const std::string cjk_h = Utf8(0x31350);      // Lo, CJK extension H, Unicode 15
  const std::string cjk_j = Utf8(0x323B0);      // Lo, CJK extension J, Unicode 17
  const std::string latin = Utf8(0xA7CB);       // Lu, Unicode 16
  EXPECT_TRUE(MatchesWhole("\\p{S}", wireless));
  EXPECT_TRUE(MatchesWhole("\\p{So}", wireless));
  EXPECT_FALSE(MatchesWhole("\\p{Cn}", wireless));
  EXPECT_TRUE(MatchesWhole("[\\p{P}\\p{S}]+", "!" + wireless + "?"));
  EXPECT_TRUE(MatchesWhole("[^\\p{L}\\p{N}]+", wireless + " "));
  EXPECT_TRUE(MatchesWhole("\\p{L}+", "a" + kawi_a + cjk_h + cjk_j + latin));
  EXPECT_TRUE(MatchesWhole("[\\p{L}\\p{M}]+", kawi_a + "b"));
  EXPECT_TRUE(MatchesWhole("\\pL\\p{lo}\\p{ Lu }", kawi_a + cjk_j + latin));
  EXPECT_FALSE(MatchesWhole("[^\\r\\n\\p{L}\\p{P}\\p{S}]", cjk_h));
  EXPECT_FALSE(MatchesWhole("\\P{L}", cjk_h));
  EXPECT_FALSE(MatchesWhole("\\p{^L}", cjk_h));
  EXPECT_TRUE(MatchesWhole("\\P{L}", "1"));
  EXPECT_TRUE(MatchesWhole("\\p{N}{1,3}", kawi_zero + kawi_zero + "7"));
  EXPECT_TRUE(MatchesWhole("\\d\\d", kawi_zero + "0"));
  EXPECT_FALSE(MatchesWhole("\\D", kawi_zero));
  // \P{..} inside a positive class: new letters leave it, through a lookahead.
  EXPECT_FALSE(MatchesWhole("[\\P{L}x]", cjk_h));
  EXPECT_TRUE(MatchesWhole("[\\P{L}x]", "x"));
  EXPECT_TRUE(MatchesWhole("[\\P{L}x]", "1"));
}

TEST(SplitRegexTest, CharactersWhoseCategoryMovedLeaveTheOldOne) {
  const std::string pharyngeal = Utf8(0x295);  // Ll in Unicode 14, Lo since
  const std::string ahom = Utf8(0x1171E);      // Mn in Unicode 14, Mc since
  EXPECT_FALSE(MatchesWhole("\\p{Ll}", pharyngeal));
  EXPECT_TRUE(MatchesWhole("\\p{Lo}", pharyngeal));
  EXPECT_TRUE(MatchesWhole("\\p{L}", pharyngeal));
  EXPECT_TRUE(MatchesWhole("\\P{Ll}", pharyngeal));
  EXPECT_TRUE(MatchesWhole("[^\\p{Ll}]", pharyngeal));
  EXPECT_FALSE(MatchesWhole("[\\p{Ll}x]", pharyngeal));
  EXPECT_TRUE(MatchesWhole("[\\p{Ll}x]+", "ax"));
  EXPECT_TRUE(MatchesWhole("[\\p{Ll}\\x{295}]", pharyngeal));  // still in by another item
  EXPECT_FALSE(MatchesWhole("\\p{Mn}", ahom));
  EXPECT_TRUE(MatchesWhole("\\p{Mc}", ahom));
}

TEST(SplitRegexTest, StillUnassignedCodePointsStayUnassigned) {
  for (const uint32_t cp : {0x378u, 0x1FFFFu, 0x3FFFDu, 0xE01F0u}) {
    EXPECT_TRUE(MatchesWhole("\\p{Cn}", Utf8(cp))) << cp;
    EXPECT_FALSE(MatchesWhole("[\\p{L}\\p{N}\\p{S}\\p{P}\\p{M}]", Utf8(cp))) << cp;
  }
}

TEST(SplitRegexTest, FindsCodePointsOfTheTable) {
  EXPECT_FALSE(HasGcTableCodePoint(""));
  EXPECT_FALSE(HasGcTableCodePoint("plain ASCII text, long enough for the 8-byte steps"));
  EXPECT_FALSE(HasGcTableCodePoint("中文 ひらがな русский 😀👍🏽 é"));
  EXPECT_TRUE(HasGcTableCodePoint("Wi-Fi " + Utf8(0x1F6DC)));
  EXPECT_TRUE(HasGcTableCodePoint(Utf8(0x295)));
  EXPECT_TRUE(HasGcTableCodePoint("abcdefgh" + Utf8(0x323B0) + "abcdefgh"));
  for (const GcRange& r : GcTable()) {
    EXPECT_TRUE(HasGcTableCodePoint(Utf8(r.first))) << r.first;
    EXPECT_TRUE(HasGcTableCodePoint(Utf8(r.last))) << r.last;
  }
}

// The plain pattern (PCRE2's own tables, faster) is only used on text without a code point of
// the table: there the two must agree.
TEST(SplitRegexTest, PlainAndUpdatedPatternsAgreeWithoutTableCodePoints) {
  const char kPattern[] =
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
      "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
  absl::StatusOr<std::unique_ptr<SplitRegex>> re = SplitRegex::Create(kPattern, false);
  ASSERT_TRUE(re.ok()) << re.status();
  for (const std::string text :
       {"Hello, world! It's 2024.", "中文，测试。ひらがな", "naïve café — «quotes»",
        "x = a_b->c[1]; // é\u0301\n\r\n", "😀👍🏽 ok!! \u3000\u00a0 end", "١٢٣ ٤٥"}) {
    ASSERT_FALSE(HasGcTableCodePoint(text));
    EXPECT_EQ(Matches(**re, text, false), Matches(**re, text, true)) << text;
  }
}

// Ids from the JS reference (@huggingface/tokenizers under node, Unicode 17) for text with
// characters newer than PCRE2's Unicode 14; PCRE2's own tables split each differently.
TEST(SplitRegexTest, DeepSeekEncodesNewCharactersAsTheJsReference) {
  const Tokenizer* tok = testing::DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {"Wi-Fi \U0001F6DC on", {56401, 38461, 7351, 252, 253, 377}},  // U+1F6DC WIRELESS
      {"x \U0001FAE8", {90, 7351, 107, 104}},                        // U+1FAE8 SHAKING FACE
      {"ok \U00031350\U00031351.",                                   // CJK extension H
       {633, 86387, 112, 238, 241, 175, 112, 238, 242, 16}},
      {" \U00011F04\U00011F05\U00011F50\U00011F51",  // Kawi letters and digits
       {86387, 242, 123, 229, 175, 242, 123, 230, 175, 242, 124, 241, 175, 242, 124, 242}},
      {" \uA7CB\uA7CC", {2297, 256, 236, 169, 256, 237}},                     // Latin, Unicode 16
      {" \U000323B0\U000323B1", {86387, 113, 239, 111, 175, 113, 239, 112}},  // CJK ext J (17)
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(text, {.add_special_tokens = false});
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, expected) << text;
  }
}

}  // namespace
}  // namespace dsv3::tokenizer
