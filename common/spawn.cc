#include "common/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace dsv3 {
namespace {

// In the child, after fork: async-signal-safe calls only (the parent may have threads).
// Reports a failure as (step, errno) on `report` and exits.
[[noreturn]] void RunChild(char* const* args, const char* log_path, const SpawnOptions& options,
                           pid_t parent, int report) {
  auto fail = [report](int step) {
    const int e[2] = {step, errno};
    (void)!write(report, e, sizeof(e));
    _exit(127);
  };
  if (options.own_process_group && setpgid(0, 0) != 0) fail(1);
  if (options.parent_death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, options.parent_death_signal) != 0) fail(2);
    if (getppid() != parent) _exit(127);  // the parent is already gone
  }
  const int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) fail(3);
  if (dup2(log, STDOUT_FILENO) < 0 || dup2(log, STDERR_FILENO) < 0) fail(3);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execve(args[0], args, environ);
  fail(4);
  _exit(127);
}

}  // namespace

absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                   const std::string& log_path, const SpawnOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("SpawnProcess: no program");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int report[2];  // the child's failure before exec; closed by a successful exec
  if (pipe2(report, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    close(report[0]);
    close(report[1]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(e)));
  }
  if (pid == 0) {
    close(report[0]);
    RunChild(args.data(), log_path.c_str(), options, parent, report[1]);
  }
  close(report[1]);
  int e[2] = {0, 0};
  ssize_t n;
  do {
    n = read(report[0], e, sizeof(e));
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n <= 0) return pid;  // exec'd
  waitpid(pid, nullptr, 0);
  static constexpr const char* kSteps[] = {"", "setpgid", "prctl", "open the log ", "exec "};
  const char* step = e[0] >= 1 && e[0] <= 4 ? kSteps[e[0]] : "start ";
  const std::string what = e[0] == 3 ? log_path : (e[0] == 4 ? argv[0] : "");
  return absl::FailedPreconditionError(
      absl::StrCat("cannot ", step, what, ": ", std::strerror(e[1])));
}

}  // namespace dsv3
