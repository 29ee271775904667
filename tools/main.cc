// `dsv3`: the operator CLI. `dsv3 <command> [--flags] [args]`; `dsv3 help` lists commands,
// `dsv3 <command> --help` lists flags.

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

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
  std::vector<char*> positional = dsv3::ParseCommandLineOrExit(
      static_cast<int>(sub_argv.size()), sub_argv.data(),
      std::string(command->summary) + "\nusage: " + program + " [--flags] [args]");
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  return command->run(args);
}
