#include "tests/support/subprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/spawn.h"
#include "gtest/gtest.h"

namespace dsv3::testing {

absl::StatusOr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                             const std::string& log_path) {
  // SIGTERM to the child if this test binary dies without its destructors (an abort, a
  // timeout's SIGKILL): a server left running would hold the ports of the next test.
  SpawnOptions options;
  options.parent_death_signal = SIGTERM;
  absl::StatusOr<pid_t> pid = SpawnProcess(argv, log_path, options);
  if (!pid.ok()) return pid.status();
  return Subprocess(*pid, log_path);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(other.pid_), exit_code_(other.exit_code_), log_path_(std::move(other.log_path_)) {
  other.pid_ = -1;
}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  std::swap(pid_, other.pid_);
  std::swap(exit_code_, other.exit_code_);
  std::swap(log_path_, other.log_path_);
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Subprocess::Signal(int signal_number) const {
  if (pid_ > 0 && !exit_code_.has_value()) kill(pid_, signal_number);
}

bool Subprocess::Running() {
  if (pid_ <= 0 || exit_code_.has_value()) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exit_code_.has_value()) return absl::FailedPreconditionError("no process");
  return *exit_code_;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Subprocess::ReadLog() const { return ReadFile(log_path_); }

absl::StatusOr<ReadyInfo> WaitForReadyFile(const std::string& path, Subprocess& process,
                                           absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(path);
    if (in) {
      nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded() && j.contains("grpc")) {
        ReadyInfo info;
        info.role = j.value("role", "");
        info.pid = j.value("pid", 0);
        info.grpc = j.value("grpc", "");
        info.http = j.value("http", "");
        info.metrics = j.value("metrics", "");
        return info;
      }
    }
    if (!process.Running()) {
      return absl::UnavailableError(
          absl::StrCat("process exited before it was ready; log:\n", process.ReadLog()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no ready file ", path, " in ", absl::FormatDuration(timeout)));
}

namespace {

std::mutex temp_dirs_mu;
std::vector<std::string>* temp_dirs = nullptr;  // leaked: read at exit

// At exit, removes the directories MakeTempDir made (checkpoints of hundreds of MB, logs),
// unless a test failed: then they stay, with their logs, and their paths are printed.
void RemoveTempDirsAtExit() {
  std::lock_guard<std::mutex> lock(temp_dirs_mu);
  const ::testing::UnitTest* unit = ::testing::UnitTest::GetInstance();
  const bool keep =
      std::getenv("DSV3_KEEP_TEST_DIRS") != nullptr || (unit != nullptr && unit->Failed());
  for (const std::string& dir : *temp_dirs) {
    if (keep) {
      std::fprintf(stderr, "kept test dir %s\n", dir.c_str());
      continue;
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(base ? base : "/tmp", "/", prefix, "XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  char* dir = mkdtemp(buf.data());
  if (dir == nullptr) return std::string();
  std::lock_guard<std::mutex> lock(temp_dirs_mu);
  if (temp_dirs == nullptr) {
    temp_dirs = new std::vector<std::string>();
    std::atexit(RemoveTempDirsAtExit);
  }
  temp_dirs->push_back(dir);
  return std::string(dir);
}

std::string BinaryPath(const std::string& name) {
  return absl::StrCat(DSV3_BINARY_DIR, "/bin/", name);
}

std::pair<int, std::string> RunCommand(const std::string& command_line) {
  std::string output;
  FILE* pipe = popen((command_line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  int status = pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, output};
}

}  // namespace dsv3::testing
