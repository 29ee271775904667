#ifndef DSV3_COMMON_SPAWN_H_
#define DSV3_COMMON_SPAWN_H_

// Starting a child process whose output goes to a log file: `dsv3 cluster`'s workers, the
// tests' servers. Unlike posix_spawn, the child can be told to end with its parent, so a
// launcher or a test binary killed outright (SIGKILL, an abort) leaves no process holding
// its ports.

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv3 {

struct SpawnOptions {
  // The child leads a process group of its own (a Ctrl-C reaches only the launcher, which
  // stops its children in order).
  bool own_process_group = false;
  // Sent to the child when the thread that spawned it ends (Linux PR_SET_PDEATHSIG; 0:
  // none). Spawn from a thread that lives as long as the child should.
  int parent_death_signal = 0;
};

// Runs argv[0] (a path) with argv, stdout and stderr appended to nothing but `log_path`
// (created or truncated), no signal blocked, the caller's environment. An error when the
// log cannot be opened or argv[0] cannot be executed (reported by the child before it exits).
absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                   const std::string& log_path, const SpawnOptions& options = {});

}  // namespace dsv3

#endif  // DSV3_COMMON_SPAWN_H_
