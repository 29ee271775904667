#ifndef DSV3_BENCH_ENGINE_BENCH_ROLES_H_
#define DSV3_BENCH_ENGINE_BENCH_ROLES_H_

// Resident memory of each load role (LoadOptions::role) on the bench model against the bytes
// of the tensors it holds, each in a fresh process (this binary re-run with --role_child), and
// what prefaulting at load buys the first request.

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsv3::bench {

// Child side: loads `dir` with the role `spec` ("everything", "attention", "experts:A-B" for
// expert ids A..B in every MoE layer; "+noprefault" appended turns prefaulting off), then
// prints one JSON line: bytes held, RSS before/after, load seconds, and for roles that can run
// a forward step, the first request's latency.
int RunRoleChild(const std::string& dir, const std::string& spec, int threads);

// Parent side: runs the children and prints a table; returns the figures as JSON.
absl::StatusOr<nlohmann::json> MeasureRoles(const std::string& self, const std::string& dir,
                                            int threads);

}  // namespace dsv3::bench

#endif  // DSV3_BENCH_ENGINE_BENCH_ROLES_H_
