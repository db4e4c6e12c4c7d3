#include "agent/process/task_reaper.h"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/cpu/fixture_tree.h"
#include "agent/process/process_test_util.h"
#include "agent/process/task_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kDeadline = absl::Seconds(20);

bool PollUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// An environ image: entries each followed by NUL, as the kernel shows it.
std::string Environ(const std::vector<std::string>& entries) {
  std::string out;
  for (const std::string& entry : entries) absl::StrAppend(&out, entry, std::string(1, '\0'));
  return out;
}

TEST(EnvironTest, MatchesWholeEntriesOnly) {
  const std::string env = Environ({"PATH=/bin", "JOULE_TASK_DIR=t-1", "HOME=/"});
  EXPECT_TRUE(EnvironHasTaskMark(env, "t-1"));
  EXPECT_FALSE(EnvironHasTaskMark(env, "t-"));
  EXPECT_FALSE(EnvironHasTaskMark(env, "t-10"));
  EXPECT_FALSE(EnvironHasTaskMark(Environ({"XJOULE_TASK_DIR=t-1"}), "t-1"));
  EXPECT_FALSE(EnvironHasTaskMark(Environ({"JOULE_TASK_DIR=t-10"}), "t-1"));
  // First entry, and a last entry without its NUL.
  EXPECT_TRUE(EnvironHasTaskMark("JOULE_TASK_DIR=t-1", "t-1"));
  EXPECT_EQ(TaskMarkInEnviron(env), "t-1");
  EXPECT_EQ(TaskMarkInEnviron(Environ({"PATH=/bin"})), "");
  EXPECT_EQ(TaskMarkInEnviron(""), "");
}

// A fixture procfs: pids with environ files; the signaller records what it
// would send and makes a killed process vanish (or fork first).
class TaskReaperFixtureTest : public ::testing::Test {
 protected:
  void Process(pid_t pid, const std::vector<std::string>& env) {
    tree_.File(absl::StrCat("proc/", pid, "/environ"), Environ(env));
  }

  TaskReaper Reaper(pid_t self = 1000000) {
    return TaskReaper(
        tree_.proc(),
        [this](pid_t pid, int signal) {
          sent_.emplace_back(pid, signal);
          auto fork = forks_on_kill_.find(pid);
          if (fork != forks_on_kill_.end()) {
            Process(fork->second, {"JOULE_TASK_DIR=t-1"});
            forks_on_kill_.erase(fork);
          }
          if (signal == SIGKILL) tree_.Remove(absl::StrCat("proc/", pid));
          return 0;
        },
        self);
  }

  FixtureTree tree_{"task_reaper"};
  std::vector<std::pair<pid_t, int>> sent_;
  // A process that forks this child just as it is signalled.
  std::map<pid_t, pid_t> forks_on_kill_;
};

TEST_F(TaskReaperFixtureTest, FindsTheTasksProcessesAndNothingElse) {
  Process(100, {"PATH=/bin", "JOULE_TASK_DIR=t-1"});
  Process(101, {"JOULE_TASK_DIR=t-1"});
  Process(102, {"JOULE_TASK_DIR=t-2"});
  Process(103, {"PATH=/bin"});
  Process(104, {});  // Gone mid-scan: empty environ, no stat.
  Process(106, {});  // A kernel thread and a zombie: never an environ.
  tree_.File("proc/106/stat", "106 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0\n");
  Process(107, {});
  tree_.File("proc/107/stat", "107 (sh) Z 100 107 107 0 -1 4194560 0 0\n");
  Process(1000000, {"JOULE_TASK_DIR=t-1"});  // The agent itself.
  tree_.File("proc/stat", "cpu 1 2 3\n");
  tree_.File("proc/self/environ", Environ({"JOULE_TASK_DIR=t-1"}));
  tree_.MakeDirectory("proc/105");  // Exited mid-scan: no environ.

  TaskReaper reaper = Reaper();
  absl::StatusOr<std::vector<pid_t>> found = reaper.Find("t-1");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, ElementsAre(100, 101));
  absl::StatusOr<std::map<std::string, std::vector<pid_t>>> all = reaper.FindAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, UnorderedElementsAre(Pair("t-1", ElementsAre(100, 101)),
                                         Pair("t-2", ElementsAre(102))));
  EXPECT_THAT(*reaper.Find("t-3"), IsEmpty());
  EXPECT_THAT(*reaper.Find(""), IsEmpty());
  EXPECT_THAT(sent_, IsEmpty());
}

TEST_F(TaskReaperFixtureTest, KillRescansForChildrenForkedDuringTheKill) {
  Process(100, {"JOULE_TASK_DIR=t-1"});
  Process(200, {"JOULE_TASK_DIR=t-2"});
  forks_on_kill_[100] = 150;

  absl::StatusOr<int> killed = Reaper().Kill("t-1", SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(*killed, 2);
  EXPECT_THAT(sent_, ElementsAre(Pair(100, SIGKILL), Pair(150, SIGKILL)));
  // The other task is untouched.
  EXPECT_THAT(*Reaper().Find("t-2"), ElementsAre(200));
}

TEST_F(TaskReaperFixtureTest, ProcessesThatLingerAreSignalledOnce) {
  Process(100, {"JOULE_TASK_DIR=t-1"});
  absl::StatusOr<int> termed = Reaper().Kill("t-1", SIGTERM);  // Does not vanish.
  ASSERT_TRUE(termed.ok());
  EXPECT_EQ(*termed, 1);
  EXPECT_THAT(sent_, ElementsAre(Pair(100, SIGTERM)));
}

TEST_F(TaskReaperFixtureTest, KillAllCountsByTaskAndIgnoresOthers) {
  Process(100, {"JOULE_TASK_DIR=a"});
  Process(101, {"JOULE_TASK_DIR=a"});
  Process(102, {"JOULE_TASK_DIR=b"});
  Process(103, {"JOULE_TASK_DIR=c"});
  absl::StatusOr<std::map<std::string, int>> killed =
      Reaper().KillAll({"a", "b", "gone"}, SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_THAT(*killed, UnorderedElementsAre(Pair("a", 2), Pair("b", 1)));
  EXPECT_THAT(*Reaper().Find("c"), ElementsAre(103));
  // No task ids: nothing, never "every task".
  EXPECT_THAT(*Reaper().KillAll({}, SIGKILL), IsEmpty());
}

TEST(TaskReaperTest, MissingProcfsIsAnError) {
  EXPECT_FALSE(TaskReaper("/no/such/proc").Find("t").ok());
}

// Real processes: a task whose shell starts a `setsid` child and a
// double-forked daemon, then waits. Killing by mark leaves nothing, and a
// process of another task lives on.
TEST(TaskReaperTest, KillsSetsidChildrenAndDaemonsOfTheTaskOnly) {
  auto spawn = [](const std::string& task_id, const std::string& script) {
    SpawnOptions options;
    options.path = "/bin/sh";
    options.args = {"-c", script};
    options.env = {{"PATH", "/usr/bin:/bin"}, {"JOULE_TASK_DIR", task_id}};
    return TaskProcess::Spawn(options);
  };
  // Unique on the machine: the scan sees every process.
  const std::string victim = absl::StrCat("reaper-victim-", getpid());
  const std::string bystander = absl::StrCat("reaper-bystander-", getpid());
  absl::StatusOr<std::unique_ptr<TaskProcess>> task =
      spawn(victim, "setsid sleep 1000 & (sh -c 'sleep 1000 &' &) ; exec sleep 1000");
  ASSERT_TRUE(task.ok()) << task.status();
  absl::StatusOr<std::unique_ptr<TaskProcess>> other = spawn(bystander, "exec sleep 1000");
  ASSERT_TRUE(other.ok()) << other.status();
  // The leader and its two escapees.
  ASSERT_TRUE(PollUntil([&] { return LiveTaskProcesses(victim).size() >= 3; }));
  ASSERT_TRUE(PollUntil([&] { return LiveTaskProcesses(bystander).size() == 1; }));

  absl::StatusOr<int> killed = TaskReaper().Kill(victim, SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_GE(*killed, 3);
  EXPECT_TRUE(PollUntil([&] { return LiveTaskProcesses(victim).empty(); }));
  EXPECT_TRUE(PollUntil([&] { return (*task)->Poll().has_value(); }));
  EXPECT_EQ((*task)->Poll()->signal, SIGKILL);

  EXPECT_THAT(LiveTaskProcesses(bystander), ElementsAre((*other)->pid()));
  (*other)->KillGroup();
  EXPECT_TRUE(PollUntil([&] { return (*other)->Poll().has_value(); }));
}

}  // namespace
}  // namespace joule
