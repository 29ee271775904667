#include "common/cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"

ABSL_FLAG(int, cli_test_count, 1, "a non-bool flag");
ABSL_FLAG(bool, cli_test_verbose, false, "a bool flag");

namespace dsv3 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Names(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return FlagsOnCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(FlagsOnCommandLineTest, ReadsNamesAsAbseilWould) {
  EXPECT_THAT(Names({"prog", "--cli_test_count", "3", "pos", "--cli-test-verbose"}),
              ElementsAre("cli_test_count", "cli_test_verbose"));
  // A separate value that looks like a flag is still the value of a non-bool flag.
  EXPECT_THAT(Names({"prog", "--cli_test_count", "--cli_test_verbose"}),
              ElementsAre("cli_test_count"));
  // A bool flag takes no separate value; --noNAME is NAME.
  EXPECT_THAT(Names({"prog", "--cli_test_verbose", "--nocli_test_verbose", "x"}),
              ElementsAre("cli_test_verbose", "cli_test_verbose"));
  EXPECT_THAT(Names({"prog", "-cli_test_count=2", "--unknown_thing=1", "--", "--after"}),
              ElementsAre("cli_test_count", "unknown_thing"));
  // Abseil's own flags are not the program's.
  EXPECT_THAT(Names({"prog", "--flagfile=/dev/null", "--fromenv=cli_test_count"}), ElementsAre());
}

TEST(FlagsHelpTextTest, GroupsWithDefaultsAndMarksUndefinedNames) {
  std::string text = FlagsHelpText("usage: prog", {{"counting", {"cli_test_count"}},
                                                   {"other", {"cli_test_verbose", "no_such"}}});
  EXPECT_THAT(text, HasSubstr("usage: prog\n\ncounting:\n  --cli_test_count  (default: 1)\n"
                              "      a non-bool flag\n"));
  EXPECT_THAT(text, HasSubstr("\nother:\n  --cli_test_verbose  (default: false)"));
  EXPECT_THAT(text, HasSubstr("--no_such  (NOT DEFINED"));
}

}  // namespace
}  // namespace dsv3
