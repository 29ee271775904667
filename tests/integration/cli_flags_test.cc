// `dsv3 <command> --help` lists that command's flags only (grouped, with defaults), and a
// flag a command does not take is refused with the command's flags and the commands that do
// take it. Runs the real binary.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::Not;

// The commands `dsv3 help` lists.
std::vector<std::string> Commands() {
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " help");
  EXPECT_EQ(rc, 0) << out;
  std::vector<std::string> names;
  bool in_list = false;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (line == "commands:") {
      in_list = true;
      continue;
    }
    if (in_list && line.empty()) break;
    if (in_list) {
      std::vector<std::string> words =
          absl::StrSplit(absl::StripLeadingAsciiWhitespace(line), ' ', absl::SkipEmpty());
      if (!words.empty()) names.push_back(words[0]);
    }
  }
  return names;
}

// The flag names a --help text lists.
std::set<std::string> ListedFlags(const std::string& help) {
  std::set<std::string> names;
  static const std::regex kFlag(R"(^  --([a-z0-9_]+)  \(default: )");
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    std::string l(line);
    std::smatch sm;
    if (std::regex_search(l, sm, kFlag)) names.insert(sm[1]);
  }
  return names;
}

TEST(CliFlagsTest, GenerateHelpListsItsOwnFlagsGroupedNotOtherCommands) {
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " generate --help");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("usage: dsv3 generate"));
  EXPECT_THAT(out, HasSubstr("\nsampling:\n"));
  EXPECT_THAT(out, HasSubstr("\nmodel loading:\n"));
  EXPECT_THAT(out, HasSubstr("  --max_tokens  (default: 16)"));
  EXPECT_THAT(out, HasSubstr("  --temperature  (default: 0)"));
  // Flags of other commands, and the process-wide server flags linked into the binary.
  for (const char* foreign : {"--bench_concurrency", "--prefill ", "--router ", "--grpc_port",
                              "--log_level", "--preset"}) {
    EXPECT_THAT(out, Not(HasSubstr(foreign))) << foreign;
  }
}

TEST(CliFlagsTest, BenchHelpListsTheBenchFlagsAndTheRouterConnection) {
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " bench --help");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("--bench_concurrency"));
  EXPECT_THAT(out, HasSubstr("\nrouter connection:\n  --router  (default: 127.0.0.1:50051)"));
  EXPECT_THAT(out, Not(HasSubstr("--draft_tokens")));
}

TEST(CliFlagsTest, AFlagOfAnotherCommandIsRefusedNamingWhereItBelongs) {
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " generate --bench_concurrency 4 --tokens 1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(
      out,
      HasSubstr("dsv3 generate: does not take --bench_concurrency (it is a flag of: dsv3 bench)"));
  EXPECT_THAT(out, HasSubstr("flags of dsv3 generate: --"));
  EXPECT_THAT(out, HasSubstr("--draft_tokens"));
  // Spelled with dashes, and a negated bool flag.
  auto [rc2, out2] = RunCommand(BinaryPath("dsv3") + " make-model --bench-ignore-eos=false");
  EXPECT_EQ(rc2, 1) << out2;
  EXPECT_THAT(out2, HasSubstr("does not take --bench_ignore_eos"));
  auto [rc3, out3] = RunCommand(BinaryPath("dsv3") + " tokenize --nochat");
  EXPECT_EQ(rc3, 1) << out3;
  EXPECT_THAT(out3,
              HasSubstr("dsv3 tokenize: does not take --chat (it is a flag of: dsv3 complete)"));
  // A process-wide flag no command takes.
  auto [rc4, out4] = RunCommand(BinaryPath("dsv3") + " logits --grpc_port=5");
  EXPECT_EQ(rc4, 1) << out4;
  EXPECT_THAT(out4, HasSubstr("dsv3 logits: unknown flag --grpc_port"));
}

TEST(CliFlagsTest, AnUnknownFlagIsRefused) {
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " complete --no_such_flag=1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("dsv3 complete: unknown flag --no_such_flag"));
  EXPECT_THAT(out, HasSubstr("flags of dsv3 complete: --api_key --chat --max_tokens"));
}

TEST(CliFlagsTest, TheCommandsOwnFlagsStillParseWithSeparateValues) {
  // `--tokens "0 1"` as two arguments: the value is not taken for a flag; the run then fails
  // on the missing model (exit 1 with the engine's message, not a flag error).
  auto [rc, out] = RunCommand(BinaryPath("dsv3") + " generate --tokens '0 1' --model /nonexistent");
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, Not(HasSubstr("unknown flag")));
  EXPECT_THAT(out, Not(HasSubstr("does not take")));
  EXPECT_THAT(out, HasSubstr("/nonexistent"));
}

// Every flag the tools define is taken by at least one command, and every name a command lists
// is a defined flag (FlagsHelpText marks an undefined one).
TEST(CliFlagsTest, EveryToolsFlagBelongsToACommandAndEveryListedFlagExists) {
  std::set<std::string> listed;
  const std::vector<std::string> commands = Commands();
  ASSERT_GE(commands.size(), 9u);
  for (const std::string& c : commands) {
    auto [rc, out] = RunCommand(BinaryPath("dsv3") + " " + c + " --help");
    ASSERT_EQ(rc, 0) << c << ": " << out;
    EXPECT_THAT(out, Not(HasSubstr("NOT DEFINED"))) << c;
    std::set<std::string> names = ListedFlags(out);
    EXPECT_FALSE(names.empty()) << c;
    listed.insert(names.begin(), names.end());
  }
  const std::regex kDefinition(R"(ABSL_FLAG\(\s*[A-Za-z_:0-9<>]+\s*,\s*([a-z0-9_]+))");
  int defined = 0;
  for (const char* file :
       {"bench_command.cc", "chat_command.cc", "cluster_command.cc", "complete_command.cc",
        "engine_flags.cc", "make_model_command.cc", "tokenize_command.cc"}) {
    std::ifstream in(std::string(DSV3_SOURCE_DIR) + "/tools/" + file);
    ASSERT_TRUE(in) << file;
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (std::sregex_iterator it(s.begin(), s.end(), kDefinition), end; it != end; ++it) {
      ++defined;
      EXPECT_TRUE(listed.count((*it)[1]))
          << "--" << (*it)[1] << " (tools/" << file << ") is taken by no command";
    }
  }
  EXPECT_GE(defined, 50);
}

}  // namespace
}  // namespace dsv3
