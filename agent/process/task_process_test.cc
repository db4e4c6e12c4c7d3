#include "agent/process/task_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/process/process_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Generous: the machine may be loaded. Tests poll and stop as soon as the
// condition holds, so this bounds only failures.
constexpr absl::Duration kDeadline = absl::Seconds(20);
constexpr absl::Duration kPollInterval = absl::Milliseconds(5);

// A fixed synthetic time for Terminate/Tick; the class reads no clock.
const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

std::string MakeTempDir() {
  std::string tmpl = absl::StrCat(::testing::TempDir(), "/task_process_XXXXXX");
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp: " << std::strerror(errno);
  return tmpl;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& contents,
               mode_t mode = 0644) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

// Polls `done` until it returns true or kDeadline passes.
template <typename Fn>
bool PollUntil(Fn done) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(kPollInterval);
  }
  return true;
}

std::optional<ExitStatus> WaitForExit(TaskProcess& process) {
  std::optional<ExitStatus> status;
  PollUntil([&] { return (status = process.Poll()).has_value(); });
  return status;
}

// The comm names of the live (not zombie) processes in process group `pgid`.
std::vector<std::string> LiveGroupMembers(pid_t pgid) {
  std::vector<std::string> comms;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return comms;
  while (struct dirent* entry = readdir(dir)) {
    std::string contents =
        ReadAll(absl::StrCat("/proc/", entry->d_name, "/stat"));
    absl::StatusOr<ProcStat> stat = ParseProcStat(contents);
    if (stat.ok() && stat->pgrp == pgid && stat->state != 'Z') {
      comms.push_back(stat->comm);
    }
  }
  closedir(dir);
  return comms;
}

bool HasLiveMember(pid_t pgid, const std::string& comm) {
  for (const std::string& c : LiveGroupMembers(pgid)) {
    if (c == comm) return true;
  }
  return false;
}

bool GroupGone(pid_t pgid) { return kill(-pgid, 0) == -1 && errno == ESRCH; }

class TaskProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }

  // Whatever a test leaves running is killed and reaped.
  void TearDown() override {
    for (auto& process : spawned_) {
      if (!process->Poll().has_value()) {
        process->KillGroup();
        WaitForExit(*process);
      }
      process->KillGroup();
    }
  }

  SpawnOptions Options(std::string path, std::vector<std::string> args) {
    SpawnOptions options;
    options.path = std::move(path);
    options.args = std::move(args);
    options.env = {{"PATH", "/usr/bin:/bin"}};
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    return options;
  }

  // Spawns and keeps ownership for cleanup; fails the test on error.
  TaskProcess* Start(const SpawnOptions& options) {
    absl::StatusOr<std::unique_ptr<TaskProcess>> process =
        TaskProcess::Spawn(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    spawned_.push_back(std::move(*process));
    return spawned_.back().get();
  }

  std::optional<ExitStatus> RunToExit(const SpawnOptions& options) {
    TaskProcess* process = Start(options);
    if (process == nullptr) return std::nullopt;
    return WaitForExit(*process);
  }

  std::string dir_;
  std::vector<std::unique_ptr<TaskProcess>> spawned_;
};

TEST_F(TaskProcessTest, ReportsExitCodeZero) {
  std::optional<ExitStatus> status = RunToExit(Options("/bin/true", {}));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 0);
  EXPECT_EQ(status->signal, 0);
}

TEST_F(TaskProcessTest, ReportsNonZeroExitCodes) {
  std::optional<ExitStatus> status = RunToExit(Options("/bin/false", {}));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  EXPECT_EQ(status->signal, 0);

  status = RunToExit(Options("/bin/sh", {"-c", "exit 42"}));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, (ExitStatus{42, 0}));
}

TEST_F(TaskProcessTest, PollKeepsReturningTheExitStatus) {
  TaskProcess* process = Start(Options("/bin/sh", {"-c", "exit 7"}));
  ASSERT_NE(process, nullptr);
  ASSERT_EQ(WaitForExit(*process), (ExitStatus{7, 0}));
  EXPECT_EQ(process->Poll(), (ExitStatus{7, 0}));
  EXPECT_EQ(process->Poll(), (ExitStatus{7, 0}));
}

TEST_F(TaskProcessTest, PidIsProcessGroupLeader) {
  TaskProcess* process = Start(Options("/bin/sleep", {"1000"}));
  ASSERT_NE(process, nullptr);
  // The parent also calls setpgid, so the group exists right away.
  EXPECT_EQ(getpgid(process->pid()), process->pid());
  EXPECT_NE(process->pid(), getpgrp());
}

TEST_F(TaskProcessTest, StdoutAndStderrAppendToFiles) {
  WriteFile(dir_ + "/stdout", "earlier\n");
  std::optional<ExitStatus> status =
      RunToExit(Options("/bin/sh", {"-c", "echo to-out; echo to-err >&2"}));
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "earlier\nto-out\n");
  EXPECT_EQ(ReadAll(dir_ + "/stderr"), "to-err\n");
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/stderr").c_str(), &st), 0);
  // Logs may hold secrets: the task's user only.
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(TaskProcessTest, StdinIsDevNull) {
  // cat would block forever on an inherited terminal or pipe.
  std::optional<ExitStatus> status =
      RunToExit(Options("/bin/sh", {"-c", "cat; echo done"}));
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "done\n");
}

TEST_F(TaskProcessTest, EnvironmentIsExactlyTheGivenOne) {
  SpawnOptions options = Options("env", {});  // Found through env's PATH.
  options.env = {{"PATH", "/usr/bin:/bin"},
                 {"JOULE_TASK", "t-1"},
                 {"WITH_SPACES", "a b  c"}};
  ASSERT_EQ(RunToExit(options), (ExitStatus{0, 0}));
  std::vector<std::string> lines =
      absl::StrSplit(ReadAll(dir_ + "/stdout"), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines,
              UnorderedElementsAre("PATH=/usr/bin:/bin", "JOULE_TASK=t-1",
                                   "WITH_SPACES=a b  c"));
}

TEST_F(TaskProcessTest, EmptyEnvironmentUsesDefaultPathForLookup) {
  SpawnOptions options = Options("env", {});
  options.env.clear();
  ASSERT_EQ(RunToExit(options), (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "");
}

TEST_F(TaskProcessTest, Argv0IsThePathAsGiven) {
  std::optional<ExitStatus> status =
      RunToExit(Options("sh", {"-c", "echo \"$0\" \"$#\""}));
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "sh 0\n");
}

TEST_F(TaskProcessTest, ArgumentsArePassedVerbatim) {
  std::optional<ExitStatus> status =
      RunToExit(Options("/bin/sh", {"-c", "printf '[%s]' \"$@\"", "name",
                                    "two words", "", "$HOME"}));
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "[two words][][$HOME]");
}

TEST_F(TaskProcessTest, WorkingDirIsHonored) {
  const std::string work = dir_ + "/work";
  ASSERT_EQ(mkdir(work.c_str(), 0755), 0);
  SpawnOptions options = Options("/bin/sh", {"-c", "pwd -P; echo hi > here"});
  options.working_dir = work;
  ASSERT_EQ(RunToExit(options), (ExitStatus{0, 0}));
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(work.c_str(), resolved), nullptr);
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), absl::StrCat(resolved, "\n"));
  EXPECT_EQ(ReadAll(work + "/here"), "hi\n");
}

TEST_F(TaskProcessTest, DoesNotLeakFileDescriptors) {
  int leaked = open("/dev/null", O_RDONLY);  // Deliberately not CLOEXEC.
  ASSERT_GE(leaked, 3);
  std::optional<ExitStatus> status = RunToExit(Options(
      "/bin/sh",
      {"-c", absl::StrCat("if [ -e /proc/$$/fd/", leaked,
                          " ]; then echo leaked; else echo closed; fi")}));
  close(leaked);
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(dir_ + "/stdout"), "closed\n");
}

TEST_F(TaskProcessTest, ResetsIgnoredAndBlockedSignals) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_action;
  ASSERT_EQ(sigaction(SIGTERM, &ignore, &old_action), 0);
  sigset_t term;
  sigset_t old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);

  TaskProcess* process =
      Start(Options("/bin/sh", {"-c", "kill -TERM $$; exit 3"}));

  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGTERM, &old_action, nullptr);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGTERM, SIGTERM}));
}

TEST_F(TaskProcessTest, MissingExecutableIsNotFound) {
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(Options("/no/such/binary", {}));
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(process.status().message(), HasSubstr("\"/no/such/binary\""));
  EXPECT_THAT(process.status().message(), HasSubstr("exec"));
}

TEST_F(TaskProcessTest, NameNotOnPathIsNotFound) {
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(Options("joule-no-such-command", {}));
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(process.status().message(),
              HasSubstr("\"joule-no-such-command\""));
}

TEST_F(TaskProcessTest, NonExecutableFileIsPermissionDenied) {
  const std::string script = dir_ + "/not-executable";
  WriteFile(script, "#!/bin/sh\nexit 0\n", 0644);
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(Options(script, {}));
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(process.status().message(), HasSubstr(script));
}

TEST_F(TaskProcessTest, MissingWorkingDirIsNotFound) {
  SpawnOptions options = Options("/bin/true", {});
  options.working_dir = dir_ + "/missing";
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(options);
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(process.status().message(), HasSubstr("chdir"));
  EXPECT_THAT(process.status().message(), HasSubstr(options.working_dir));
}

TEST_F(TaskProcessTest, UnopenableStdoutIsReported) {
  SpawnOptions options = Options("/bin/true", {});
  options.stdout_path = dir_ + "/missing/stdout";
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(options);
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(process.status().message(), HasSubstr("open stdout"));
}

// ---------------------------------------------------------------------------
// Identity, privileges and cgroup (the tests run as root).

TEST_F(TaskProcessTest, RunsAsTheGivenUserAndGroupsWithNoNewPrivs) {
  SpawnOptions options = Options("/bin/sleep", {"1000"});
  // The child opens its logs as the user: /dev/null here.
  options.stdout_path.clear();
  options.stderr_path.clear();
  options.credentials = ProcessCredentials{60001, 60002, {60010, 60011}};
  options.no_new_privs = true;
  TaskProcess* process = Start(options);
  ASSERT_NE(process, nullptr);
  // Spawn returns once execve has succeeded: the credentials are final.
  absl::StatusOr<ProcStatus> status = ReadProcStatus(process->pid());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->uid, ElementsAre(60001, 60001, 60001, 60001));
  EXPECT_THAT(status->gid, ElementsAre(60002, 60002, 60002, 60002));
  EXPECT_THAT(status->groups, ElementsAre(60010, 60011));
  EXPECT_EQ(status->no_new_privs, 1);
}

TEST_F(TaskProcessTest, NoSupplementaryGroupsWhenNoneAreGiven) {
  SpawnOptions options = Options("/bin/sleep", {"1000"});
  options.stdout_path.clear();
  options.stderr_path.clear();
  options.credentials = ProcessCredentials{60001, 60001, {}};
  TaskProcess* process = Start(options);
  ASSERT_NE(process, nullptr);
  absl::StatusOr<ProcStatus> status = ReadProcStatus(process->pid());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->uid, ElementsAre(60001, 60001, 60001, 60001));
  EXPECT_THAT(status->groups, ::testing::IsEmpty());
  // Not asked for: the caller's setting (the test runner's: off).
  EXPECT_EQ(status->no_new_privs, 0);
}

TEST_F(TaskProcessTest, NoNewPrivsWithoutChangingUser) {
  SpawnOptions options = Options("/bin/sleep", {"1000"});
  options.no_new_privs = true;
  TaskProcess* process = Start(options);
  ASSERT_NE(process, nullptr);
  absl::StatusOr<ProcStatus> status = ReadProcStatus(process->pid());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->no_new_privs, 1);
  EXPECT_EQ(status->uid[0], static_cast<int64_t>(getuid()));
}

TEST_F(TaskProcessTest, LogsAreOpenedWithTheTasksRights) {
  // dir_ is root's, 0700: the user may not create its logs there.
  SpawnOptions options = Options("/bin/true", {});
  options.credentials = ProcessCredentials{60001, 60001, {}};
  absl::StatusOr<std::unique_ptr<TaskProcess>> refused = TaskProcess::Spawn(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("open stdout"));

  // In a directory of its own they are created by and for the user.
  const std::string base = MakeTraversableTempDir("task_process_user");
  const std::string home = base + "/home";
  ASSERT_EQ(mkdir(home.c_str(), 0700), 0);
  ASSERT_EQ(chown(home.c_str(), 60001, 60001), 0);
  options = Options("/bin/sh", {"-c", "echo hello; id -u > uid"});
  options.working_dir = home;
  options.stdout_path = "stdout.log";
  options.stderr_path = "stderr.log";
  options.credentials = ProcessCredentials{60001, 60001, {}};
  std::optional<ExitStatus> status = RunToExit(options);
  ASSERT_EQ(status, (ExitStatus{0, 0}));
  EXPECT_EQ(ReadAll(home + "/uid"), "60001\n");
  EXPECT_EQ(ReadAll(home + "/stdout.log"), "hello\n");
  struct stat st;
  ASSERT_EQ(stat((home + "/stdout.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 60001u);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  RemoveTree(base);
}

TEST_F(TaskProcessTest, ChildJoinsTheCgroupBeforeExec) {
  // An ordinary directory stands in for cgroupfs: the child writes its pid.
  const std::string cgroup = dir_ + "/cgroup";
  ASSERT_EQ(mkdir(cgroup.c_str(), 0755), 0);
  WriteFile(cgroup + "/cgroup.procs", "");
  SpawnOptions options = Options("/bin/true", {});
  options.cgroup_dir = cgroup;
  TaskProcess* process = Start(options);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(ReadAll(cgroup + "/cgroup.procs"), absl::StrCat(process->pid()));

  options.cgroup_dir = dir_ + "/no-such-cgroup";
  absl::StatusOr<std::unique_ptr<TaskProcess>> missing = TaskProcess::Spawn(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no-such-cgroup/cgroup.procs"));
}

TEST_F(TaskProcessTest, InvalidEnvironmentIsRejectedBeforeFork) {
  SpawnOptions options = Options("/bin/true", {});
  options.env.push_back({"A=B", "c"});
  absl::StatusOr<std::unique_ptr<TaskProcess>> process =
      TaskProcess::Spawn(options);
  EXPECT_EQ(process.status().code(), absl::StatusCode::kInvalidArgument);

  options = Options("", {});
  process = TaskProcess::Spawn(options);
  EXPECT_EQ(process.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TaskProcessTest, TerminateKillsTheWholeGroup) {
  // The shell forks sleep (it is not the last command) and waits for it.
  TaskProcess* process = Start(Options("/bin/sh", {"-c", "sleep 1000; true"}));
  ASSERT_NE(process, nullptr);
  const pid_t pgid = process->pid();
  ASSERT_TRUE(PollUntil([&] { return HasLiveMember(pgid, "sleep"); }));
  EXPECT_FALSE(process->stop_requested());

  process->Terminate(kT0, absl::Seconds(10));
  EXPECT_TRUE(process->stop_requested());
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGTERM, SIGTERM}));
  // SIGTERM reached the grandchild too, not only the leader.
  EXPECT_TRUE(PollUntil([&] { return LiveGroupMembers(pgid).empty(); }));

  process->KillGroup();
  // The orphaned sleep may linger briefly as a zombie until init reaps it.
  EXPECT_TRUE(PollUntil([&] { return GroupGone(pgid); }));
  process->KillGroup();  // ESRCH is fine.
}

TEST_F(TaskProcessTest, TickEscalatesToSigkillAfterGrace) {
  TaskProcess* process =
      Start(Options("/bin/sh", {"-c", "trap '' TERM; sleep 1000; true"}));
  ASSERT_NE(process, nullptr);
  const pid_t pgid = process->pid();
  // Once sleep runs, the trap is in place (and sleep inherited it).
  ASSERT_TRUE(PollUntil([&] { return HasLiveMember(pgid, "sleep"); }));

  process->Terminate(kT0, absl::Seconds(30));
  process->Tick(kT0 + absl::Seconds(29));
  // SIGTERM is ignored and the deadline has not passed: still running.
  EXPECT_TRUE(HasLiveMember(pgid, "sleep"));
  EXPECT_FALSE(process->Poll().has_value());

  process->Tick(kT0 + absl::Seconds(30));
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGKILL, SIGKILL}));
  EXPECT_TRUE(PollUntil([&] { return GroupGone(pgid); }));
}

TEST_F(TaskProcessTest, SecondTerminateKeepsEarlierDeadline) {
  TaskProcess* process =
      Start(Options("/bin/sh", {"-c", "trap '' TERM; sleep 1000; true"}));
  ASSERT_NE(process, nullptr);
  ASSERT_TRUE(
      PollUntil([&] { return HasLiveMember(process->pid(), "sleep"); }));
  process->Terminate(kT0, absl::Seconds(5));
  process->Terminate(kT0 + absl::Seconds(1), absl::Seconds(60));
  process->Tick(kT0 + absl::Seconds(5));
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGKILL, SIGKILL}));
}

TEST_F(TaskProcessTest, TickWithoutTerminateDoesNothing) {
  TaskProcess* process = Start(Options("/bin/sleep", {"1000"}));
  ASSERT_NE(process, nullptr);
  process->Tick(kT0 + absl::Hours(1000));
  EXPECT_FALSE(process->stop_requested());
  EXPECT_FALSE(process->Poll().has_value());
  process->KillGroup();
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGKILL, SIGKILL}));
}

TEST_F(TaskProcessTest, CpuSecondsGrowsForBusyChild) {
  TaskProcess* process =
      Start(Options("/bin/sh", {"-c", "while :; do :; done"}));
  ASSERT_NE(process, nullptr);
  absl::StatusOr<double> cpu;
  EXPECT_TRUE(PollUntil([&] {
    cpu = process->CpuSeconds();
    return cpu.ok() && *cpu > 0.05;
  })) << cpu.status();
  process->KillGroup();
  EXPECT_EQ(WaitForExit(*process), (ExitStatus{128 + SIGKILL, SIGKILL}));
}

TEST_F(TaskProcessTest, CpuSecondsIsZeroishForIdleChild) {
  TaskProcess* process = Start(Options("/bin/sleep", {"1000"}));
  ASSERT_NE(process, nullptr);
  absl::StatusOr<double> cpu = process->CpuSeconds();
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_GE(*cpu, 0.0);
  EXPECT_LT(*cpu, 0.05);
}

std::string StatLine(int pid, const std::string& comm, int pgrp, int utime,
                     int stime, int cutime, int cstime) {
  return absl::StrCat(pid, " (", comm, ") S 1 ", pgrp, " ", pgrp,
                      " 0 -1 4194560 100 0 0 0 ", utime, " ", stime, " ",
                      cutime, " ", cstime, " 20 0 1 0 12345 1000 100\n");
}

TEST_F(TaskProcessTest, CpuSecondsSumsGroupFromProcfsFixture) {
  // A real child supplies the pgid; the stat files are a fixture tree.
  TaskProcess* process = Start(Options("/bin/sleep", {"1000"}));
  ASSERT_NE(process, nullptr);
  const int pgid = process->pid();
  const std::string root = dir_ + "/proc";
  auto add = [&](const std::string& name, const std::string* stat) {
    ASSERT_EQ(mkdir((root + "/" + name).c_str(), 0755), 0);
    if (stat != nullptr) WriteFile(root + "/" + name + "/stat", *stat);
  };
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  const std::string leader = StatLine(pgid, "sh", pgid, 100, 50, 30, 20);
  const std::string child = StatLine(pgid + 1, "py) (x", pgid, 7, 3, 0, 0);
  const std::string other =
      StatLine(pgid + 2, "other", pgid + 2, 999, 999, 999, 999);
  const std::string self = StatLine(4242, "self", pgid, 555, 555, 0, 0);
  add(absl::StrCat(pgid), &leader);
  add(absl::StrCat(pgid + 1), &child);
  add(absl::StrCat(pgid + 2), &other);
  add("self", &self);                    // Not a pid directory.
  add(absl::StrCat(pgid + 3), nullptr);  // Vanished during the scan.
  const std::string empty;
  add(absl::StrCat(pgid + 4), &empty);  // Exited while being read.

  absl::StatusOr<double> cpu = process->CpuSeconds(root);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_DOUBLE_EQ(*cpu, 210.0 / sysconf(_SC_CLK_TCK));

  const std::string garbage = "garbage";
  add(absl::StrCat(pgid + 5), &garbage);
  cpu = process->CpuSeconds(root);
  EXPECT_EQ(cpu.status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(process->CpuSeconds(dir_ + "/no-proc").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseProcStatTest, ParsesRealLine) {
  absl::StatusOr<ProcStat> stat = ParseProcStat(
      "4242 (python3) R 1 4240 4240 0 -1 4194560 5000 0 0 0 "
      "1234 567 89 10 20 0 3 0 12345 100000 2000 18446744073709551615\n");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->pid, 4242);
  EXPECT_EQ(stat->comm, "python3");
  EXPECT_EQ(stat->state, 'R');
  EXPECT_EQ(stat->ppid, 1);
  EXPECT_EQ(stat->pgrp, 4240);
  EXPECT_EQ(stat->utime_ticks, 1234u);
  EXPECT_EQ(stat->stime_ticks, 567u);
  EXPECT_EQ(stat->cutime_ticks, 89);
  EXPECT_EQ(stat->cstime_ticks, 10);
}

TEST(ParseProcStatTest, HandlesParenthesesAndSpacesInComm) {
  for (const std::string comm :
       {"a) b) c", "tmux: server", ")", "(", "((x))", ") R 9 9 9", " ", ""}) {
    SCOPED_TRACE(comm);
    absl::StatusOr<ProcStat> stat = ParseProcStat(absl::StrCat(
        "123 (", comm, ") S 1 123 123 0 -1 0 0 0 0 0 11 22 33 44"));
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_EQ(stat->pid, 123);
    EXPECT_EQ(stat->comm, comm);
    EXPECT_EQ(stat->state, 'S');
    EXPECT_EQ(stat->pgrp, 123);
    EXPECT_EQ(stat->utime_ticks, 11u);
    EXPECT_EQ(stat->stime_ticks, 22u);
    EXPECT_EQ(stat->cutime_ticks, 33);
    EXPECT_EQ(stat->cstime_ticks, 44);
  }
}

TEST(ParseProcStatTest, RejectsMalformedText) {
  struct Case {
    std::string text;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {"", "'('"},
      {"garbage", "'('"},
      {"123 (sh S 1 2 3", "')'"},
      {"123 )sh( S 1 2 3", "')'"},
      {"abc (sh) S 1 123 123 0 -1 0 0 0 0 0 11 22 33 44", "pid"},
      {"123 (sh)", "0 fields"},
      {"123 (sh) S 1 123 123 0 -1 0 0 0 0 0 11 22 33", "14 fields"},
      {"123 (sh) S 1 x 123 0 -1 0 0 0 0 0 11 22 33 44", "pgrp"},
      {"123 (sh) S 1 123 123 0 -1 0 0 0 0 0 1.5 22 33 44", "utime"},
      {"123 (sh) S 1 123 123 0 -1 0 0 0 0 0 11 -2 33 44", "stime"},
      {"123 (sh) S 1 123 123 0 -1 0 0 0 0 0 11 22 x 44", "cutime"},
      {"123 (sh) SS 1 123 123 0 -1 0 0 0 0 0 11 22 33 44", "state"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<ProcStat> stat = ParseProcStat(c.text);
    ASSERT_FALSE(stat.ok());
    EXPECT_EQ(stat.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(stat.status().message(), HasSubstr(c.problem));
  }
}

TEST_F(TaskProcessTest, ReadFileTailTruncates) {
  const std::string path = dir_ + "/log";
  WriteFile(path, "0123456789");
  bool truncated = false;

  absl::StatusOr<std::string> tail = ReadFileTail(path, 4, &truncated);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(*tail, "6789");
  EXPECT_TRUE(truncated);

  tail = ReadFileTail(path, 10, &truncated);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "0123456789");
  EXPECT_FALSE(truncated);

  tail = ReadFileTail(path, 1 << 20, &truncated);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "0123456789");
  EXPECT_FALSE(truncated);

  tail = ReadFileTail(path, 0, &truncated);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "");
  EXPECT_TRUE(truncated);

  tail = ReadFileTail(path, 3, nullptr);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "789");
}

TEST_F(TaskProcessTest, ReadFileTailOfLargeFile) {
  const std::string path = dir_ + "/big";
  std::string contents(300 * 1024, 'a');
  contents += "end";
  WriteFile(path, contents);
  bool truncated = false;
  absl::StatusOr<std::string> tail = ReadFileTail(path, 100'000, &truncated);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->size(), 100'000u);
  EXPECT_EQ(*tail, contents.substr(contents.size() - 100'000));
  EXPECT_TRUE(truncated);
}

TEST_F(TaskProcessTest, ReadFileTailErrors) {
  bool truncated = true;
  absl::StatusOr<std::string> tail =
      ReadFileTail(dir_ + "/missing", 10, &truncated);
  EXPECT_EQ(tail.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tail.status().message(), HasSubstr("missing"));
  EXPECT_FALSE(truncated);

  WriteFile(dir_ + "/log", "x");
  EXPECT_EQ(ReadFileTail(dir_ + "/log", -1, &truncated).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A task owns its directory and may plant links and FIFOs where its logs
// were: the agent (root) neither follows nor blocks on them.
TEST_F(TaskProcessTest, ReadFileTailRefusesLinksAndFifos) {
  WriteFile(dir_ + "/secret", "secret\n");
  ASSERT_EQ(symlink((dir_ + "/secret").c_str(), (dir_ + "/link").c_str()), 0);
  ASSERT_EQ(mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
  bool truncated = true;
  absl::StatusOr<std::string> link = ReadFileTail(dir_ + "/link", 100, &truncated);
  EXPECT_EQ(link.status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<std::string> fifo = ReadFileTail(dir_ + "/fifo", 100, &truncated);
  EXPECT_EQ(fifo.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFileTail(dir_, 100, &truncated).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TaskProcessTest, ReadsChildLogWhileRunning) {
  TaskProcess* process =
      Start(Options("/bin/sh", {"-c",
                                "i=0; while [ $i -lt 50 ]; do echo line$i; "
                                "i=$((i+1)); done; sleep 1000"}));
  ASSERT_NE(process, nullptr);
  bool truncated = false;
  absl::StatusOr<std::string> tail;
  EXPECT_TRUE(PollUntil([&] {
    tail = ReadFileTail(dir_ + "/stdout", 7, &truncated);
    return tail.ok() && *tail == "line49\n";
  }));
  EXPECT_TRUE(truncated);
}

}  // namespace
}  // namespace joule
