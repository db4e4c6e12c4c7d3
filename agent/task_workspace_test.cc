#include "agent/task_workspace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/process/process_test_util.h"
#include "agent/process/task_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;
};

Owner Stat(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return {99999, 99999, 0};
  return {st.st_uid, st.st_gid, st.st_mode & 07777};
}

bool operator==(const Owner& a, const Owner& b) {
  return a.uid == b.uid && a.gid == b.gid && a.mode == b.mode;
}
std::ostream& operator<<(std::ostream& os, const Owner& o) {
  return os << o.uid << ":" << o.gid << " " << std::oct << o.mode << std::dec;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TaskWorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override { base_ = MakeTraversableTempDir("task_workspace"); }
  void TearDown() override { RemoveTree(base_); }

  std::string base_;
};

TEST_F(TaskWorkspaceTest, LayoutOwnersAndModes) {
  TaskWorkspace workspace(base_ + "/work/");
  EXPECT_EQ(workspace.root(), base_ + "/work");
  ASSERT_TRUE(workspace.Prepare().ok());
  EXPECT_EQ(Stat(base_ + "/work"), (Owner{0, 0, 0711}));
  EXPECT_EQ(Stat(base_ + "/work/tasks"), (Owner{0, 0, 0711}));
  EXPECT_EQ(Stat(base_ + "/work/hints"), (Owner{0, 0, 0711}));
  EXPECT_EQ(workspace.JournalPath(), base_ + "/work/caps.journal");

  ASSERT_TRUE(workspace.MakeTaskDir("t-1", 60001, 60002).ok());
  EXPECT_EQ(workspace.TaskDir("t-1"), base_ + "/work/tasks/t-1");
  EXPECT_EQ(Stat(workspace.TaskDir("t-1")), (Owner{60001, 60002, 0700}));

  ASSERT_TRUE(workspace.WriteHints("t-1", 60002, "stop=0\n").ok());
  EXPECT_EQ(workspace.HintsPath("t-1"), base_ + "/work/hints/t-1");
  EXPECT_EQ(Stat(workspace.HintsPath("t-1")), (Owner{0, 60002, 0640}));
  EXPECT_EQ(ReadAll(workspace.HintsPath("t-1")), "stop=0\n");
  ASSERT_TRUE(workspace.WriteHints("t-1", 60002, "stop=1\n").ok());
  EXPECT_EQ(ReadAll(workspace.HintsPath("t-1")), "stop=1\n");
  EXPECT_EQ(Stat(workspace.HintsPath("t-1") + "~").mode, 0);  // No temp file left.

  // A directory an earlier run left, with other owners and modes: taken
  // over; the root's modes are put right again.
  ASSERT_EQ(chmod((base_ + "/work").c_str(), 0777), 0);
  ASSERT_TRUE(workspace.MakeTaskDir("t-1", 60003, 60003).ok());
  EXPECT_EQ(Stat(workspace.TaskDir("t-1")), (Owner{60003, 60003, 0700}));
  EXPECT_EQ(Stat(base_ + "/work"), (Owner{0, 0, 0711}));

  ASSERT_TRUE(workspace.MakeTaskDir("t-2", 60001, 60001).ok());
  EXPECT_THAT(workspace.TaskIds(), UnorderedElementsAre("t-1", "t-2"));
  workspace.RemoveHints("t-1");
  workspace.RemoveHints("never");
  EXPECT_EQ(Stat(workspace.HintsPath("t-1")).mode, 0);
  ASSERT_TRUE(workspace.WriteHints("t-2", 60001, "x").ok());
  workspace.RemoveAllHints();
  EXPECT_EQ(Stat(workspace.HintsPath("t-2")).mode, 0);
}

TEST_F(TaskWorkspaceTest, RefusesARootOfAnotherUserAndLinksForTaskDirs) {
  const std::string planted = base_ + "/planted";
  ASSERT_EQ(mkdir(planted.c_str(), 0777), 0);
  ASSERT_EQ(chown(planted.c_str(), 60001, 60001), 0);
  absl::Status status = TaskWorkspace(planted).Prepare();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("belongs to uid 60001"));

  TaskWorkspace workspace(base_ + "/work");
  ASSERT_TRUE(workspace.Prepare().ok());
  ASSERT_EQ(symlink("/etc", workspace.TaskDir("t-link").c_str()), 0);
  EXPECT_EQ(workspace.MakeTaskDir("t-link", 60001, 60001).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Stat("/etc").uid, 0u);
}

// What a task of another user can and cannot do to the layout, tried by
// real processes running as that user.
TEST_F(TaskWorkspaceTest, OtherUsersCannotReadATaskDirOrTouchItsHints) {
  TaskWorkspace workspace(base_ + "/work");
  ASSERT_TRUE(workspace.MakeTaskDir("victim", 60002, 60002).ok());
  ASSERT_TRUE(workspace.WriteHints("victim", 60002, "stop=0\n").ok());
  std::ofstream(workspace.TaskDir("victim") + "/secret") << "secret\n";
  ASSERT_TRUE(workspace.MakeTaskDir("owner", 60002, 60002).ok());

  // Runs `script` as uid:gid and returns its exit code.
  auto run_as = [&](uid_t uid, gid_t gid, const std::string& script) {
    SpawnOptions options;
    options.path = "/bin/sh";
    options.args = {"-c", script};
    options.env = {{"PATH", "/usr/bin:/bin"}};
    options.credentials = ProcessCredentials{uid, gid, {}};
    absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return -1;
    std::optional<ExitStatus> exit;
    while (!(exit = (*process)->Poll()).has_value()) usleep(1000);
    return exit->exit_code;
  };
  const std::string dir = workspace.TaskDir("victim");
  const std::string hints = workspace.HintsPath("victim");
  // Another user: nothing.
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("ls ", dir)), 0);
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("cat ", dir, "/secret")), 0);
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("cat ", hints)), 0);
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("echo stop=1 > ", hints)), 0);
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("ls ", workspace.root())), 0);
  EXPECT_NE(run_as(60001, 60001, absl::StrCat("touch ", workspace.root(), "/x")), 0);
  // The task's own user reads its hints but can neither write nor replace
  // them, and cannot touch the agent's directories.
  EXPECT_EQ(run_as(60002, 60002, absl::StrCat("cat ", hints)), 0);
  EXPECT_EQ(run_as(60002, 60002, absl::StrCat("cat ", dir, "/secret")), 0);
  EXPECT_NE(run_as(60002, 60002, absl::StrCat("echo stop=1 > ", hints)), 0);
  EXPECT_NE(run_as(60002, 60002, absl::StrCat("echo stop=1 > ", dir, "/h; mv -f ", dir,
                                              "/h ", hints)),
            0);
  EXPECT_NE(run_as(60002, 60002, absl::StrCat("rm -f ", hints)), 0);
  EXPECT_NE(run_as(60002, 60002,
                   absl::StrCat("touch ", workspace.root(), "/caps.journal")),
            0);
  EXPECT_EQ(ReadAll(hints), "stop=0\n");
}

}  // namespace
}  // namespace joule
