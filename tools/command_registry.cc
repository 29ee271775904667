#include "tools/command_registry.h"

namespace dsv3::tools {
namespace {
std::vector<Command>& MutableCommands() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}
}  // namespace

bool RegisterCommand(const Command& command) {
  MutableCommands().push_back(command);
  return true;
}

const std::vector<Command>& Commands() { return MutableCommands(); }

}  // namespace dsv3::tools
