#ifndef DSV3_TESTS_SUPPORT_SUBPROCESS_H_
#define DSV3_TESTS_SUPPORT_SUBPROCESS_H_

// Real child processes for integration tests: start a binary, read its ready file, signal
// it, wait for it with a deadline. The destructor kills a child still running, so a
// failing test never leaves a process behind.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dsv3::testing {

class Subprocess {
 public:
  // Starts `argv[0]` with the given arguments; stdout and stderr go to `log_path`.
  static absl::StatusOr<Subprocess> Start(const std::vector<std::string>& argv,
                                          const std::string& log_path);
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  void Signal(int signal_number) const;
  // Waits for the exit; returns the exit code (128 + signal when killed by one), or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

 private:
  Subprocess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// Endpoints from a ready file ({"role","pid","grpc","http","metrics"}).
struct ReadyInfo {
  std::string role;
  int pid = 0;
  std::string grpc;     // host:port
  std::string http;     // host:port
  std::string metrics;  // host:port of /metrics (the HTTP port's, unless --metrics_port)
};

// Polls `path` until it holds a complete ready file, the process exits, or the timeout.
absl::StatusOr<ReadyInfo> WaitForReadyFile(const std::string& path, Subprocess& process,
                                           absl::Duration timeout);

// A fresh directory under the test temp dir ($TEST_TMPDIR or /tmp), removed when the test
// process exits unless a test failed or DSV3_KEEP_TEST_DIRS is set.
std::string MakeTempDir(const std::string& prefix);

// The whole file at `path` ("" when it cannot be read).
std::string ReadFile(const std::string& path);

// Path of a built binary (bin/ of the build tree).
std::string BinaryPath(const std::string& name);

// Runs a command line through /bin/sh, capturing stdout+stderr; returns {exit code, output}.
std::pair<int, std::string> RunCommand(const std::string& command_line);

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_SUPPORT_SUBPROCESS_H_
