// API keys (router/api_keys.h): the key file's format, authentication, the per-key limits on
// a clock the test moves, and the file re-read when it changes.

#include "router/api_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/support/subprocess.h"

namespace dsv3::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAlice[] = "sk-alice-0123456789abcdef";
constexpr char kBob[] = "sk-bob-0123456789abcdef00";

std::string Bearer(const std::string& key) { return "Bearer " + key; }

TEST(ApiKeyFileTest, ReadsPlainAndHashedKeysWithTheirLimits) {
  const std::string text =
      absl::StrCat("# team keys\n", "alice ", kAlice, " rps=5 streams=2\n", "\n",
                   "bob   sha256:", Sha256Hex(kBob), "   tpm=1000  # batch jobs\n");
  ApiKeyLimits defaults;
  defaults.requests_per_second = 1;
  defaults.tokens_per_minute = 600;
  auto entries = ParseApiKeyFile(text, defaults);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].name, "alice");
  EXPECT_EQ((*entries)[0].sha256_hex, Sha256Hex(kAlice));
  EXPECT_EQ((*entries)[0].limits.requests_per_second, 5);
  EXPECT_EQ((*entries)[0].limits.tokens_per_minute, 600);  // the default
  EXPECT_EQ((*entries)[0].limits.max_streams, 2);
  EXPECT_EQ((*entries)[1].name, "bob");
  EXPECT_EQ((*entries)[1].sha256_hex, Sha256Hex(kBob));
  EXPECT_EQ((*entries)[1].limits.requests_per_second, 1);
  EXPECT_EQ((*entries)[1].limits.tokens_per_minute, 1000);
  // SHA-256 of "abc" (FIPS 180-2's example).
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ApiKeyFileTest, MalformedLinesNameTheLineAndNeverTheKey) {
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"alice\n", "line 1: expected NAME KEY"},
      {"\n\nalice short\n", "line 3: a key must have at least 16 characters"},
      {"alice sha256:1234\n", "line 1: sha256: needs 64 hex digits"},
      {absl::StrCat("alice ", kAlice, " rpm=3\n"), "unknown limit 'rpm'"},
      {absl::StrCat("alice ", kAlice, " rps=-1\n"), "a limit is NAME=NUMBER >= 0"},
      {absl::StrCat("alice ", kAlice, "\nalice ", kBob, "\n"), "line 2: key name 'alice' twice"},
      {absl::StrCat("alice ", kAlice, "\nbob ", kAlice, "\n"), "line 2: the same key twice"},
      {absl::StrCat("al/ice ", kAlice, "\n"), "letters, digits"},
  };
  for (const auto& c : cases) {
    auto entries = ParseApiKeyFile(c.text, ApiKeyLimits());
    ASSERT_FALSE(entries.ok()) << c.text;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(entries.status().message(), HasSubstr(c.error)) << c.text;
    EXPECT_THAT(entries.status().message(), Not(HasSubstr(kAlice)));
  }
}

class ApiKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::MakeTempDir("api-keys") + "/keys";
    Write(absl::StrCat("alice ", kAlice, " rps=2\n", "bob sha256:", Sha256Hex(kBob),
                       " tpm=600 streams=1\n"));
    ApiKeyOptions options;
    options.reload_interval = absl::Hours(1);  // the test re-reads by hand
    options.now = [this] { return now_; };
    auto keys = ApiKeys::Load(path_, options);
    ASSERT_TRUE(keys.ok()) << keys.status();
    keys_ = *keys;
  }

  void Write(const std::string& text) {
    // Replaced, as a Kubernetes Secret update replaces the file.
    std::ofstream(path_ + ".new") << text;
    std::rename((path_ + ".new").c_str(), path_.c_str());
  }

  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  std::string path_;
  std::shared_ptr<ApiKeys> keys_;
};

TEST_F(ApiKeysTest, AuthenticatesBearerKeysOnly) {
  EXPECT_EQ(*keys_->Authenticate(Bearer(kAlice)), "alice");
  EXPECT_EQ(*keys_->Authenticate(Bearer(kBob)), "bob");  // given as its hash
  for (const std::string& bad :
       {std::string(), std::string(kAlice), Bearer("sk-nobody-0123456789abcdef"),
        std::string("Basic ") + kAlice, Bearer(std::string(kAlice) + "x")}) {
    auto name = keys_->Authenticate(bad);
    ASSERT_FALSE(name.ok()) << bad;
    EXPECT_EQ(name.status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
}

TEST_F(ApiKeysTest, RequestsPerSecondRefillAtTheirRate) {
  // rps=2: a burst of 2, then one every 500 ms.
  ASSERT_TRUE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  ASSERT_TRUE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  auto third = keys_->AdmitGeneration(Bearer(kAlice));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("2 requests per second"));
  ASSERT_TRUE(RetryAfter(third.status()).has_value());
  EXPECT_EQ(*RetryAfter(third.status()), absl::Milliseconds(500));
  now_ += absl::Milliseconds(499);
  EXPECT_FALSE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  now_ += absl::Milliseconds(2);
  EXPECT_TRUE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  // Another key's limits are its own.
  EXPECT_TRUE(keys_->AdmitGeneration(Bearer(kBob)).ok());
}

TEST_F(ApiKeysTest, TokensPerMinuteChargeWhatARequestUsedAndStreamsAreCapped) {
  // tpm=600 (10 a second), streams=1.
  auto first = keys_->AdmitGeneration(Bearer(kBob));
  ASSERT_TRUE(first.ok());
  auto second = keys_->AdmitGeneration(Bearer(kBob));
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("in flight"));
  (*first)->End(700);  // 100 tokens of debt
  first->reset();
  auto in_debt = keys_->AdmitGeneration(Bearer(kBob));
  ASSERT_FALSE(in_debt.ok());
  EXPECT_THAT(in_debt.status().message(), HasSubstr("600 tokens per minute"));
  // Back above zero after (100 + 1) tokens at 10 a second.
  EXPECT_EQ(*RetryAfter(in_debt.status()), absl::Milliseconds(10100));
  now_ += absl::Seconds(10);
  EXPECT_FALSE(keys_->AdmitGeneration(Bearer(kBob)).ok());
  now_ += absl::Milliseconds(200);
  auto again = keys_->AdmitGeneration(Bearer(kBob));
  EXPECT_TRUE(again.ok());
  // A use dropped without End (a request refused before it started) frees its slot.
  again->reset();
  EXPECT_TRUE(keys_->AdmitGeneration(Bearer(kBob)).ok());
}

TEST_F(ApiKeysTest, ReReadsTheFileWhenItChangesAndKeepsTheOldKeysOnABadOne) {
  constexpr char kCarol[] = "sk-carol-0123456789abcdef";
  ASSERT_TRUE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  ASSERT_TRUE(keys_->AdmitGeneration(Bearer(kAlice)).ok());  // alice's burst is spent
  // Carol added, bob revoked, alice kept (with what she used).
  Write(absl::StrCat("alice ", kAlice, " rps=2\ncarol ", kCarol, "\n"));
  keys_->ReloadIfChanged();
  EXPECT_EQ(keys_->size(), 2);
  EXPECT_EQ(*keys_->Authenticate(Bearer(kCarol)), "carol");
  EXPECT_EQ(keys_->Authenticate(Bearer(kBob)).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(keys_->AdmitGeneration(Bearer(kAlice)).ok());
  // A file that no longer parses changes nothing.
  Write("carol\n");
  keys_->ReloadIfChanged();
  EXPECT_EQ(*keys_->Authenticate(Bearer(kCarol)), "carol");
  EXPECT_EQ(keys_->size(), 2);
}

TEST(ApiKeysLoadTest, AMissingOrMalformedFileIsAnError) {
  EXPECT_EQ(ApiKeys::Load("/nonexistent/keys", ApiKeyOptions()).status().code(),
            absl::StatusCode::kNotFound);
  const std::string path = testing::MakeTempDir("api-keys") + "/keys";
  std::ofstream(path) << "alice tooshort\n";
  auto keys = ApiKeys::Load(path, ApiKeyOptions());
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(keys.status().message(), HasSubstr("line 1"));
}

}  // namespace
}  // namespace dsv3::router
