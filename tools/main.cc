// `dsv3`: the operator CLI. `dsv3 <command> [--flags] [args]`; `dsv3 help` lists commands,
// `dsv3 <command> --help` lists that command's flags; a flag the command does not take is an
// error that names the command's flags (and the commands that do take it).

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/cli.h"
#include "common/mutex_mode.h"
#include "tools/command_registry.h"

namespace {

void PrintCommands(FILE* out) {
  std::fprintf(out, "usage: dsv3 <command> [--flags] [args]\n\ncommands:\n");
  std::vector<dsv3::tools::Command> sorted = dsv3::tools::Commands();
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
  for (const auto& c : sorted) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'dsv3 <command> --help' lists the flags.\n");
}

// The flags `command` takes: those its groups name.
std::set<std::string> FlagsOf(const dsv3::tools::Command& command) {
  std::set<std::string> names;
  for (const auto& group : command.flags) names.insert(group.names.begin(), group.names.end());
  return names;
}

// Exits 1 when argv holds a flag `command` does not take, saying which commands take it.
void RefuseForeignFlagsOrExit(const dsv3::tools::Command& command, int argc, char** argv) {
  const std::set<std::string> own = FlagsOf(command);
  for (const std::string& name : dsv3::FlagsOnCommandLine(argc, argv)) {
    if (own.count(name) || name == "help" || name == "h") continue;
    std::vector<std::string> takers;
    for (const auto& c : dsv3::tools::Commands()) {
      if (FlagsOf(c).count(name)) takers.push_back(c.name);
    }
    std::fprintf(stderr, "dsv3 %s: %s --%s", command.name,
                 takers.empty() ? "unknown flag" : "does not take", name.c_str());
    if (!takers.empty()) {
      std::fprintf(stderr, " (it is a flag of: dsv3 %s)", absl::StrJoin(takers, ", dsv3 ").c_str());
    }
    std::fprintf(stderr, "\nflags of dsv3 %s: --%s\n('dsv3 %s --help' describes them)\n",
                 command.name, absl::StrJoin(own, " --").c_str(), command.name);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  dsv3::DisableMutexDeadlockDetection();
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    PrintCommands(stdout);
    return argc < 2 ? 2 : 0;
  }
  const dsv3::tools::Command* command = nullptr;
  for (const auto& c : dsv3::tools::Commands()) {
    if (!std::strcmp(c.name, argv[1])) command = &c;
  }
  if (command == nullptr) {
    std::fprintf(stderr, "dsv3: unknown command '%s'\n\n", argv[1]);
    PrintCommands(stderr);
    return 2;
  }
  // Re-assemble argv as "dsv3 <command>" followed by its flags, so usage messages name it.
  std::string program = std::string("dsv3 ") + command->name;
  std::vector<char*> sub_argv;
  sub_argv.push_back(program.data());
  for (int i = 2; i < argc; ++i) sub_argv.push_back(argv[i]);
  const std::string usage =
      program + ": " + command->summary + "\nusage: " + program + " [--flags] [args]";
  const int sub_argc = static_cast<int>(sub_argv.size());
  for (int i = 1; i < sub_argc; ++i) {
    if (!std::strcmp(sub_argv[i], "--")) break;
    if (!std::strcmp(sub_argv[i], "--help") || !std::strcmp(sub_argv[i], "-h") ||
        !std::strcmp(sub_argv[i], "-help")) {
      std::string text = dsv3::FlagsHelpText(usage, command->flags);
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    }
  }
  RefuseForeignFlagsOrExit(*command, sub_argc, sub_argv.data());
  std::vector<char*> positional = dsv3::ParseCommandLineOrExit(sub_argc, sub_argv.data(), usage);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  const absl::Status status = command->run(args);
  if (status.ok()) return 0;
  std::fprintf(stderr, "dsv3 %s: %s\n", command->name, std::string(status.message()).c_str());
  return dsv3::tools::IsUsageError(status) ? 2 : 1;
}
