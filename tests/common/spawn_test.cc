// SpawnProcess (common/spawn.h): real children, their log, their errors, and the signal that
// ends them with the thread that spawned them.

#include "common/spawn.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

// The child's wait status, or -1 if it has not ended within `timeout`.
int WaitStatus(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -1;
}

TEST(SpawnTest, OutputAndErrorsGoToTheLogAndTheExitCodeComesBack) {
  const std::string log = testing::MakeTempDir("spawn") + "/log.txt";
  auto pid = SpawnProcess({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, log);
  ASSERT_TRUE(pid.ok()) << pid.status();
  const int status = WaitStatus(*pid, absl::Seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(testing::ReadFile(log), "out\nerr\n");
}

TEST(SpawnTest, AProgramThatCannotRunOrALogThatCannotBeWrittenIsAnError) {
  const std::string dir = testing::MakeTempDir("spawn");
  auto missing = SpawnProcess({dir + "/no-such-program"}, dir + "/log.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot exec " + dir + "/no-such-program"),
            std::string::npos)
      << missing.status();
  auto no_log = SpawnProcess({"/bin/true"}, dir + "/no-such-dir/log.txt");
  ASSERT_FALSE(no_log.ok());
  EXPECT_NE(no_log.status().message().find("cannot open the log"), std::string::npos)
      << no_log.status();
}

TEST(SpawnTest, AChildEndsWithTheThreadThatSpawnedItAndLeadsItsOwnGroup) {
  const std::string dir = testing::MakeTempDir("spawn");
  SpawnOptions options;
  options.own_process_group = true;
  options.parent_death_signal = SIGTERM;
  absl::StatusOr<pid_t> pid;
  std::thread spawner([&] { pid = SpawnProcess({"/bin/sleep", "30"}, dir + "/log.txt", options); });
  spawner.join();  // the spawning thread is gone: the child gets SIGTERM
  ASSERT_TRUE(pid.ok()) << pid.status();
  const int status = WaitStatus(*pid, absl::Seconds(10));
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child outlived the thread that spawned it";
  EXPECT_EQ(WTERMSIG(status), SIGTERM);

  auto lives = SpawnProcess({"/bin/sleep", "30"}, dir + "/log2.txt", options);
  ASSERT_TRUE(lives.ok()) << lives.status();
  EXPECT_EQ(getpgid(*lives), *lives);
  EXPECT_EQ(WaitStatus(*lives, absl::Milliseconds(200)), -1);  // this thread lives on
  kill(*lives, SIGKILL);
  WaitStatus(*lives, absl::Seconds(10));
}

}  // namespace
}  // namespace dsv3
