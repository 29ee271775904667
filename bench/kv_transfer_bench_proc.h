#ifndef DSV3_BENCH_KV_TRANSFER_BENCH_PROC_H_
#define DSV3_BENCH_KV_TRANSFER_BENCH_PROC_H_

// Child processes for the KV transfer benches: started in their own process group with
// pipes on stdin/stdout, killed (the whole group) when the parent dies (PR_SET_PDEATHSIG),
// when Stop is called, or when the object goes away; every read has a deadline.

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dsv3::bench {

class ChildProcess {
 public:
  // Starts argv[0] (a path, or a name looked up in PATH) with the parent's environment plus
  // `env`. stdout is piped to the parent; stderr goes to `stderr_path` ("" = inherited).
  static absl::StatusOr<ChildProcess> Start(const std::vector<std::string>& argv,
                                            const std::map<std::string, std::string>& env,
                                            const std::string& stderr_path = "");
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess() { Stop(absl::Seconds(2)); }

  pid_t pid() const { return pid_; }
  // One line of the child's stdout (without the newline), or DEADLINE_EXCEEDED, or
  // OUT_OF_RANGE when the child closed its stdout.
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);
  // Everything the child writes until it exits and closes stdout (or the deadline).
  absl::StatusOr<std::string> ReadAll(absl::Time deadline);
  absl::Status WriteLine(const std::string& line);
  // Closes the child's stdin (a target in the bench exits on EOF).
  void CloseStdin();
  // Waits for the exit until `deadline`; returns the exit code (128+signal when killed).
  absl::StatusOr<int> Wait(absl::Time deadline);
  // SIGTERM to the child's process group, SIGKILL after `grace`, then reaps it. Idempotent.
  void Stop(absl::Duration grace);

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  std::string buffered_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreeLocalPort();

}  // namespace dsv3::bench

#endif  // DSV3_BENCH_KV_TRANSFER_BENCH_PROC_H_
