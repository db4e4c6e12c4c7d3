#include "agent/process/task_cgroup.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/process/process_test_util.h"
#include "agent/process/task_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::Contains;
using ::testing::IsEmpty;

constexpr absl::Duration kDeadline = absl::Seconds(20);

bool PollUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
}

std::string MakeTempDir() {
  std::string tmpl = absl::StrCat(::testing::TempDir(), "/task_cgroup_XXXXXX");
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
  return tmpl;
}

// An ordinary directory standing in for cgroupfs: files are read as the
// kernel writes them, and nothing is ever signalled from them.
TEST(TaskCgroupFixtureTest, ReadsProcsAndCpuAndRefusesToSignalOutsideCgroupfs) {
  const std::string root = MakeTempDir();
  absl::StatusOr<TaskCgroup> cgroup = TaskCgroup::Create(root, "t-1");
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  EXPECT_EQ(cgroup->dir(), root + "/t-1");
  // Taken over when it exists.
  ASSERT_TRUE(TaskCgroup::Create(root, "t-1").ok());
  WriteFile(root + "/t-1/cgroup.procs", "12\n345\n");
  WriteFile(root + "/t-1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n");
  EXPECT_THAT(*cgroup->Pids(), ::testing::ElementsAre(12, 345));
  EXPECT_DOUBLE_EQ(*cgroup->CpuSeconds(), 2.5);
  EXPECT_FALSE(TaskCgroup::IsCgroup2(root));
  EXPECT_EQ(cgroup->Kill().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cgroup->KillByPids().code(), absl::StatusCode::kFailedPrecondition);

  WriteFile(root + "/t-1/cgroup.procs", "12\nnot-a-pid\n");
  EXPECT_EQ(cgroup->Pids().status().code(), absl::StatusCode::kDataLoss);
  WriteFile(root + "/t-1/cpu.stat", "user_usec 1\n");
  EXPECT_EQ(cgroup->CpuSeconds().status().code(), absl::StatusCode::kNotFound);

  WriteFile(root + "/file", "");
  absl::StatusOr<TaskCgroup> not_dir = TaskCgroup::Create(root, "file");
  EXPECT_EQ(not_dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(TaskCgroup::Create(root + "/missing", "t").ok());
}

// A real cgroup2 subtree, where the sandbox has a writable one.
class TaskCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why_not;
    std::optional<std::string> root = MakeTestCgroup(&why_not);
    if (!root.has_value()) GTEST_SKIP() << "no writable cgroup v2: " << why_not;
    root_ = *root;
  }
  void TearDown() override {
    for (auto& process : spawned_) {
      process->KillGroup();
      PollUntil([&] { return process->Poll().has_value(); });
    }
    if (!root_.empty()) RemoveTestCgroup(root_);
  }

  // A task in `cgroup` whose shell leaves a `setsid` child and a
  // double-forked daemon behind, then waits.
  TaskProcess* StartEscapingTask(const TaskCgroup& cgroup) {
    SpawnOptions options;
    options.path = "/bin/sh";
    options.args = {"-c", "setsid sleep 1000 & (sh -c 'sleep 1000 &' &) ; exec sleep 1000"};
    options.env = {{"PATH", "/usr/bin:/bin"}};
    options.cgroup_dir = cgroup.dir();
    absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    spawned_.push_back(*std::move(process));
    return spawned_.back().get();
  }

  void KillsEverything(bool by_pids) {
    absl::StatusOr<TaskCgroup> cgroup = TaskCgroup::Create(root_, "t-kill");
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    EXPECT_TRUE(TaskCgroup::IsCgroup2(cgroup->dir()));
    TaskProcess* task = StartEscapingTask(*cgroup);
    ASSERT_NE(task, nullptr);
    // The leader joined before exec; its escapees were born inside.
    ASSERT_TRUE(PollUntil([&] { return cgroup->Pids()->size() >= 3; }));
    EXPECT_THAT(*cgroup->Pids(), Contains(task->pid()));
    // Not empty yet: rmdir refuses.
    EXPECT_EQ(cgroup->Remove().code(), absl::StatusCode::kFailedPrecondition);

    ASSERT_TRUE((by_pids ? cgroup->KillByPids() : cgroup->Kill()).ok());
    EXPECT_TRUE(PollUntil([&] { return task->Poll().has_value(); }));
    EXPECT_EQ(task->Poll()->signal, SIGKILL);
    EXPECT_TRUE(PollUntil([&] { return cgroup->Pids()->empty(); }));
    EXPECT_TRUE(PollUntil([&] { return cgroup->Remove().ok(); }));
    struct stat st;
    EXPECT_NE(stat(cgroup->dir().c_str(), &st), 0);
  }

  std::string root_;
  std::vector<std::unique_ptr<TaskProcess>> spawned_;
};

TEST_F(TaskCgroupTest, CgroupKillLeavesNoProcess) { KillsEverything(false); }

TEST_F(TaskCgroupTest, KillByPidsLeavesNoProcess) { KillsEverything(true); }

TEST_F(TaskCgroupTest, CpuSecondsComesFromTheKernel) {
  absl::StatusOr<TaskCgroup> cgroup = TaskCgroup::Create(root_, "t-cpu");
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  absl::StatusOr<double> cpu = cgroup->CpuSeconds();
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_GE(*cpu, 0);
  EXPECT_THAT(*cgroup->Pids(), IsEmpty());
  EXPECT_TRUE(cgroup->Remove().ok());
}

}  // namespace
}  // namespace joule
