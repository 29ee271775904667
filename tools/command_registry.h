#ifndef DSV3_TOOLS_COMMAND_REGISTRY_H_
#define DSV3_TOOLS_COMMAND_REGISTRY_H_

// Subcommands of the `dsv3` operator CLI. Each lives in its own `*_command.cc` file, defines
// its Abseil flags there, and registers itself with DSV3_REGISTER_COMMAND, naming every flag
// it reads in titled groups (its own first, then shared ones from flag_groups.h). main.cc
// parses the flags that follow the subcommand name, refuses a flag that is not the command's,
// and runs it; `dsv3 <command> --help` lists the command's groups.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/cli.h"

namespace dsv3::tools {

// `args` are the positional arguments left after flag parsing (without the subcommand name).
// main.cc prints an error as `dsv3 <command>: <message>` and exits 2 for a UsageError, 1
// for any other.
using CommandFn = absl::Status (*)(const std::vector<std::string>& args);

// A command called wrongly (flags missing or out of range): exit code 2.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
  std::vector<FlagGroup> flags;  // every flag the command reads
};

// Registers a command; returns true so it can initialise a static.
bool RegisterCommand(const Command& command);
const std::vector<Command>& Commands();

}  // namespace dsv3::tools

// The arguments after `fn` are the command's FlagGroups.
#define DSV3_REGISTER_COMMAND(ident, name, summary, fn, ...) \
  static const bool dsv3_command_registered_##ident =        \
      ::dsv3::tools::RegisterCommand({name, summary, fn, {__VA_ARGS__}})

#endif  // DSV3_TOOLS_COMMAND_REGISTRY_H_
