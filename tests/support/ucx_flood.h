#ifndef DSV3_TESTS_SUPPORT_UCX_FLOOD_H_
#define DSV3_TESTS_SUPPORT_UCX_FLOOD_H_

// Stopping a UCX worker's shared-memory receive ring the way a crash does: a sender
// (ucx_flood_main.cc, another process) floods the worker with messages and is killed
// mid-flood. Each kill stops the ring only sometimes (when it lands inside a message).

#include <string>

#include "absl/status/statusor.h"

namespace dsv3::testing {

// Starts a flood into the worker at `ucx_address` (a raw ucp address) and kills it once it
// is sending: true. False when the flood could not connect (a ring already stopped does not
// answer the connection ping); an error when the flood could not start. `log`: its output.
absl::StatusOr<bool> FloodThenKill(const std::string& ucx_address, const std::string& log);

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_SUPPORT_UCX_FLOOD_H_
