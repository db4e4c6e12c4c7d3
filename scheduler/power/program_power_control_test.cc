#include "scheduler/power/program_power_control.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// An executable shell script at `name` under the test's directory.
std::string Script(const std::string& name, const std::string& body) {
  const std::string path = TempDir() + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  chmod(path.c_str(), 0755);
  return path;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(RunPowerProgramTest, PassesTheNodeNameAsOneArgument) {
  const std::string log = TempDir() + "/args.log";
  const std::string program = Script("args.sh", "printf '%s|' \"$#\" \"$1\" > " + log);
  // No shell between the scheduler and the program: a name is never a
  // command line.
  ASSERT_TRUE(RunPowerProgram(program, "node-1; touch /tmp/x", absl::Seconds(10)).ok());
  EXPECT_EQ(Read(log), "1|node-1; touch /tmp/x|");
}

TEST(RunPowerProgramTest, ReportsFailuresAndKillsSlowPrograms) {
  absl::Status failed =
      RunPowerProgram(Script("fail.sh", "exit 3"), "node-1", absl::Seconds(10));
  EXPECT_EQ(failed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(failed.message(), HasSubstr("exited with 3"));

  const absl::Time start = absl::Now();
  absl::Status slow =
      RunPowerProgram(Script("slow.sh", "exec sleep 30"), "node-1", absl::Milliseconds(200));
  EXPECT_EQ(slow.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  EXPECT_EQ(RunPowerProgram(TempDir() + "/missing", "node-1", absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ProgramPowerControlTest, RunsCommandsInOrderOffTheCallersThread) {
  const std::string log = TempDir() + "/order.log";
  ProgramPowerControl::Options options;
  options.suspend_program = Script("suspend.sh", "sleep 0.2; echo suspend $1 >> " + log);
  options.resume_program = Script("resume.sh", "echo resume $1 >> " + log);
  ProgramPowerControl control(options);
  const absl::Time start = absl::Now();
  control.Suspend("a");
  control.Suspend("b");
  control.Resume("c");
  // Queued, not run: the callers hold the scheduler's lock.
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(150));
  control.WaitIdle();
  EXPECT_EQ(Read(log), "suspend a\nsuspend b\nresume c\n");
  EXPECT_EQ(control.failures(), 0);
}

TEST(ProgramPowerControlTest, TheLatestCommandForANodeWins) {
  const std::string log = TempDir() + "/latest.log";
  const std::string gate = TempDir() + "/gate";
  ProgramPowerControl::Options options;
  // The first command waits for the gate, so the others queue behind it.
  options.suspend_program = Script(
      "suspend-gated.sh", "while [ ! -e " + gate + " ]; do sleep 0.05; done; echo suspend $1 >> " + log);
  options.resume_program = Script("resume-log.sh", "echo resume $1 >> " + log);
  ProgramPowerControl control(options);
  control.Suspend("a");
  absl::SleepFor(absl::Milliseconds(200));  // "a" is running, held by the gate
  control.Suspend("b");
  control.Resume("b");  // b is wanted again before its suspend ran
  std::ofstream(gate) << "";
  control.WaitIdle();
  EXPECT_EQ(Read(log), "suspend a\nresume b\n");
}

TEST(ProgramPowerControlTest, CountsFailures) {
  ProgramPowerControl::Options options;
  options.suspend_program = Script("suspend-fails.sh", "exit 1");
  options.resume_program = TempDir() + "/no-such-program";
  ProgramPowerControl control(options);
  control.Suspend("a");
  control.Resume("b");
  control.WaitIdle();
  EXPECT_EQ(control.failures(), 2);
}

}  // namespace
}  // namespace joule
