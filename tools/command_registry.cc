#include "tools/command_registry.h"

#include "absl/strings/cord.h"

namespace dsv3::tools {
namespace {
constexpr char kUsagePayload[] = "type.dsv3/tools.UsageError";

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

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord());
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

}  // namespace dsv3::tools
