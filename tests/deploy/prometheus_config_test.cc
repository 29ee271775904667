// deploy/prometheus with the real promtool: the rules and both scrape configurations check,
// the rules' unit tests pass, and broken inputs are rejected (so the checks can fail).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::RunCommand;
using ::testing::HasSubstr;

const std::string kPrometheusDir = std::string(DSV3_SOURCE_DIR) + "/deploy/prometheus";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int CountOccurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

TEST(PrometheusConfigTest, RulesCheck) {
  std::string rules = ReadFile(kPrometheusDir + "/dsv3-rules.yml");
  int alerts = CountOccurrences(rules, "- alert: ");
  ASSERT_GE(alerts, 4);
  auto [rc, out] = RunCommand("promtool check rules " + kPrometheusDir + "/dsv3-rules.yml");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("SUCCESS: ", alerts, " rules found")));
  // The alerts the operations issue asks for.
  for (const char* name : {"Dsv3HighTimeToFirstToken", "Dsv3KvCacheNearlyFull", "Dsv3TargetDown",
                           "Dsv3WorkerUnreachableFromRouter", "Dsv3HighErrorRatio"}) {
    EXPECT_THAT(rules, HasSubstr(absl::StrCat("- alert: ", name, "\n"))) << name;
  }
}

TEST(PrometheusConfigTest, RuleUnitTestsPass) {
  auto [rc, out] =
      RunCommand("cd " + kPrometheusDir + " && promtool test rules dsv3-rules.test.yml");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("SUCCESS"));
}

TEST(PrometheusConfigTest, ScrapeConfigsCheck) {
  for (const char* file : {"prometheus.yml", "prometheus-kubernetes.yml"}) {
    auto [rc, out] = RunCommand("promtool check config " + kPrometheusDir + "/" + file);
    EXPECT_EQ(rc, 0) << file << ": " << out;
    EXPECT_THAT(out, HasSubstr("SUCCESS: 1 rule files found")) << file;
  }
}

TEST(PrometheusConfigTest, BrokenInputsAreRejected) {
  std::string dir = MakeTempDir("promtool-broken");
  ASSERT_FALSE(dir.empty());
  std::string rules = ReadFile(kPrometheusDir + "/dsv3-rules.yml");

  // A parse error in an expression.
  std::ofstream(dir + "/bad-rules.yml") << absl::StrReplaceAll(rules, {{"> 0.95", "> 0.95)"}});
  auto [rules_rc, rules_out] = RunCommand("promtool check rules " + dir + "/bad-rules.yml");
  EXPECT_NE(rules_rc, 0) << rules_out;

  // A threshold the unit tests do not expect: the KV alert no longer fires at 97%.
  std::ofstream(dir + "/dsv3-rules.yml") << absl::StrReplaceAll(rules, {{"> 0.95", "> 0.98"}});
  std::ofstream(dir + "/dsv3-rules.test.yml") << ReadFile(kPrometheusDir + "/dsv3-rules.test.yml");
  auto [test_rc, test_out] =
      RunCommand("cd " + dir + " && promtool test rules dsv3-rules.test.yml");
  EXPECT_NE(test_rc, 0) << test_out;
  EXPECT_THAT(test_out, HasSubstr("Dsv3KvCacheNearlyFull"));

  // An unknown field in a scrape configuration.
  std::string config = ReadFile(kPrometheusDir + "/prometheus.yml");
  std::ofstream(dir + "/prometheus.yml")
      << absl::StrReplaceAll(config, {{"metrics_path:", "metrics_pathh:"}});
  auto [config_rc, config_out] = RunCommand("promtool check config " + dir + "/prometheus.yml");
  EXPECT_NE(config_rc, 0) << config_out;
}

}  // namespace
}  // namespace dsv3
