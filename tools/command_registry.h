#ifndef DSV3_TOOLS_COMMAND_REGISTRY_H_
#define DSV3_TOOLS_COMMAND_REGISTRY_H_

// Subcommands of the `dsv3` operator CLI. Each lives in its own `*_command.cc` file, defines
// its Abseil flags there, and registers itself with DSV3_REGISTER_COMMAND, naming every flag
// it reads in titled groups (its own first, then shared ones from flag_groups.h). main.cc
// parses the flags that follow the subcommand name, refuses a flag that is not the command's,
// and runs it; `dsv3 <command> --help` lists the command's groups.

#include <string>
#include <vector>

#include "common/cli.h"

namespace dsv3::tools {

// `args` are the positional arguments left after flag parsing (without the subcommand name).
// Returns the process exit code.
using CommandFn = int (*)(const std::vector<std::string>& args);

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
