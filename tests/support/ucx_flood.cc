#include "tests/support/ucx_flood.h"

#include <signal.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/support/subprocess.h"

namespace dsv3::testing {

absl::StatusOr<bool> FloodThenKill(const std::string& ucx_address, const std::string& log) {
  auto flood = Subprocess::Start({DSV3_UCX_FLOOD, absl::BytesToHexString(ucx_address)}, log);
  if (!flood.ok()) return flood.status();
  // Its connection ping takes up to 5 s to fail.
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (flood->ReadLog().find("flooding") == std::string::npos && flood->Running() &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (flood->ReadLog().find("flooding") == std::string::npos) {
    if (flood->Running()) return absl::DeadlineExceededError("the flood never started");
    return false;
  }
  absl::SleepFor(absl::Milliseconds(5));
  flood->Signal(SIGKILL);
  if (auto code = flood->Wait(absl::Seconds(10)); !code.ok()) return code.status();
  return true;
}

}  // namespace dsv3::testing
