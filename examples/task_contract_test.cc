#include "examples/task_contract.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::examples {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name, ".",
                      ::getpid());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Writes like the agent does: a temp file renamed over the target.
void WriteAtomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(std::rename(temp.c_str(), path.c_str()), 0);
}

// ---------------------------------------------------------------------------
// Range lists.

TEST(ParseRangeListTest, ParsesSinglesAndRanges) {
  absl::StatusOr<std::set<int>> shards = ParseRangeList("0-3,8,10-11");
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_THAT(*shards, ElementsAre(0, 1, 2, 3, 8, 10, 11));
}

TEST(ParseRangeListTest, EmptyStringIsEmptySet) {
  absl::StatusOr<std::set<int>> shards = ParseRangeList("  ");
  ASSERT_TRUE(shards.ok());
  EXPECT_THAT(*shards, IsEmpty());
}

TEST(ParseRangeListTest, ToleratesSpacesOverlapsAndDisorder) {
  absl::StatusOr<std::set<int>> shards = ParseRangeList(" 5 , 1 - 3,2,7-7 ");
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_THAT(*shards, ElementsAre(1, 2, 3, 5, 7));
}

struct BadRangeCase {
  std::string input;
  std::string token;  // The token the error must quote.
};

class ParseRangeListErrorTest : public ::testing::TestWithParam<BadRangeCase> {};

TEST_P(ParseRangeListErrorTest, NamesTheBadToken) {
  absl::StatusOr<std::set<int>> shards = ParseRangeList(GetParam().input);
  ASSERT_FALSE(shards.ok()) << "accepted \"" << GetParam().input << "\"";
  EXPECT_EQ(shards.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(shards.status().message()),
              HasSubstr(absl::StrCat("\"", GetParam().token, "\"")));
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, ParseRangeListErrorTest,
    ::testing::Values(BadRangeCase{"3-1", "3-1"}, BadRangeCase{"a", "a"},
                      BadRangeCase{"0,1-", "1-"}, BadRangeCase{"-2", "-2"},
                      BadRangeCase{"0,-1-3", "-1-3"},
                      BadRangeCase{"1,,2", ""}, BadRangeCase{"1-2-3", "1-2-3"},
                      BadRangeCase{"+3", "+3"}, BadRangeCase{"0x3", "0x3"},
                      BadRangeCase{"2.5", "2.5"},
                      BadRangeCase{"99999999999", "99999999999"},
                      BadRangeCase{"0-2000000", "0-2000000"}));

TEST(FormatRangeListTest, CompactsRuns) {
  EXPECT_EQ(FormatRangeList({}), "");
  EXPECT_EQ(FormatRangeList({4}), "4");
  EXPECT_EQ(FormatRangeList({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(FormatRangeList({1, 3, 5}), "1,3,5");
}

TEST(FormatRangeListTest, RoundTrips) {
  for (const std::string text :
       {"", "0", "0-3,8", "0-15,32-47", "1,3-4,6,9-12", "1048575"}) {
    absl::StatusOr<std::set<int>> parsed = ParseRangeList(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(FormatRangeList(*parsed), text);
  }
  // Non-canonical input comes back canonical and parses to the same set.
  absl::StatusOr<std::set<int>> messy = ParseRangeList("3,1,2,2,7");
  ASSERT_TRUE(messy.ok());
  EXPECT_EQ(FormatRangeList(*messy), "1-3,7");
}

TEST(ShardsWithinTest, DropsShardsAtOrAboveCount) {
  std::set<int> dropped;
  EXPECT_THAT(ShardsWithin({0, 3, 4, 9}, 4, &dropped), ElementsAre(0, 3));
  EXPECT_THAT(dropped, ElementsAre(4, 9));
}

// ---------------------------------------------------------------------------
// Environment.

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ReadTaskEnvTest, ReadsEveryVariable) {
  absl::StatusOr<TaskEnv> env = ReadTaskEnv(FakeEnv({
      {"JOULE_JOB_ID", "job-7"},
      {"JOULE_TASK_ID", "job-7/1"},
      {"JOULE_REPLICA_INDEX", "1"},
      {"JOULE_REPLICA_COUNT", "2"},
      {"JOULE_BATCH_SIZE", "128"},
      {"JOULE_SHARDS", "0-3,8"},
      {"JOULE_SHARD_COUNT", "16"},
      {"CUDA_VISIBLE_DEVICES", "0,1"},
      {"JOULE_PROGRESS_FILE", "/tmp/p"},
      {"JOULE_HINTS_FILE", "/tmp/h"},
  }));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->job_id, "job-7");
  EXPECT_EQ(env->task_id, "job-7/1");
  EXPECT_EQ(env->replica_index, 1);
  EXPECT_EQ(env->replica_count, 2);
  EXPECT_EQ(env->batch_size, 128);
  ASSERT_TRUE(env->shards.has_value());
  EXPECT_THAT(*env->shards, ElementsAre(0, 1, 2, 3, 8));
  EXPECT_EQ(env->shard_count, 16);
  EXPECT_EQ(env->cuda_visible_devices, "0,1");
  EXPECT_EQ(env->progress_file, "/tmp/p");
  EXPECT_EQ(env->hints_file, "/tmp/h");
}

TEST(ReadTaskEnvTest, MissingVariablesLeaveDefaults) {
  absl::StatusOr<TaskEnv> env = ReadTaskEnv(FakeEnv({}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->replica_index, 0);
  EXPECT_EQ(env->replica_count, 1);
  EXPECT_FALSE(env->batch_size.has_value());
  EXPECT_FALSE(env->shards.has_value());
  EXPECT_FALSE(env->shard_count.has_value());
  EXPECT_THAT(env->progress_file, IsEmpty());
  EXPECT_THAT(env->hints_file, IsEmpty());
}

TEST(ReadTaskEnvTest, EmptyShardListMeansNoShardsYet) {
  absl::StatusOr<TaskEnv> env = ReadTaskEnv(FakeEnv({{"JOULE_SHARDS", ""}}));
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_TRUE(env->shards.has_value());
  EXPECT_THAT(*env->shards, IsEmpty());
}

struct BadEnvCase {
  std::map<std::string, std::string> vars;
  std::string variable;  // The error must start with this name.
  std::string detail;    // ... and mention this.
};

class ReadTaskEnvErrorTest : public ::testing::TestWithParam<BadEnvCase> {};

TEST_P(ReadTaskEnvErrorTest, NamesTheVariable) {
  absl::StatusOr<TaskEnv> env = ReadTaskEnv(FakeEnv(GetParam().vars));
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(env.status().message());
  EXPECT_THAT(message, StartsWith(GetParam().variable + ":"));
  EXPECT_THAT(message, HasSubstr(GetParam().detail));
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, ReadTaskEnvErrorTest,
    ::testing::Values(
        BadEnvCase{{{"JOULE_SHARDS", "0-3,x"}}, "JOULE_SHARDS", "\"x\""},
        BadEnvCase{{{"JOULE_SHARDS", "5-2"}}, "JOULE_SHARDS", "\"5-2\""},
        BadEnvCase{{{"JOULE_SHARDS", "0-4"}, {"JOULE_SHARD_COUNT", "4"}},
                   "JOULE_SHARDS", "4"},
        BadEnvCase{{{"JOULE_BATCH_SIZE", "big"}}, "JOULE_BATCH_SIZE", "big"},
        BadEnvCase{{{"JOULE_BATCH_SIZE", "0"}}, "JOULE_BATCH_SIZE", "0"},
        BadEnvCase{{{"JOULE_SHARD_COUNT", "-1"}}, "JOULE_SHARD_COUNT", "-1"},
        BadEnvCase{{{"JOULE_REPLICA_COUNT", "2"}, {"JOULE_REPLICA_INDEX", "2"}},
                   "JOULE_REPLICA_INDEX", "2"}));

TEST(TaskSettingsTest, FallsBackToFlagsAndAllShards) {
  TaskSettings settings = TaskSettings::FromEnv(TaskEnv(), 32, 3);
  EXPECT_EQ(settings.batch_size(), 32);
  EXPECT_EQ(settings.shard_count(), 3);
  EXPECT_THAT(settings.shards(), ElementsAre(0, 1, 2));
  EXPECT_EQ(settings.device_speed(), 1.0);
  EXPECT_FALSE(settings.stop());
}

TEST(TaskSettingsTest, EnvironmentBeatsFlags) {
  TaskEnv env;
  env.batch_size = 128;
  env.shard_count = 8;
  env.shards = std::set<int>{5, 6};
  TaskSettings settings = TaskSettings::FromEnv(env, 32, 3);
  EXPECT_EQ(settings.batch_size(), 128);
  EXPECT_EQ(settings.shard_count(), 8);
  EXPECT_THAT(settings.shards(), ElementsAre(5, 6));
}

TEST(TaskSettingsTest, HintsOverrideAndRevert) {
  TaskSettings settings(32, 8, {0, 1});
  Hints hints;
  hints.batch_size = 64;
  hints.device_speed = 0.5;
  hints.shards = std::set<int>{0, 1, 2, 9};  // 9 is beyond the shard count.
  settings.Apply(hints);
  EXPECT_EQ(settings.batch_size(), 64);
  EXPECT_EQ(settings.device_speed(), 0.5);
  EXPECT_THAT(settings.shards(), ElementsAre(0, 1, 2));

  // Keys removed: tunables revert, the shard set stays.
  settings.Apply(Hints());
  EXPECT_EQ(settings.batch_size(), 32);
  EXPECT_EQ(settings.device_speed(), 1.0);
  EXPECT_THAT(settings.shards(), ElementsAre(0, 1, 2));

  Hints stop;
  stop.stop = true;
  settings.Apply(stop);
  EXPECT_TRUE(settings.stop());
}

// ---------------------------------------------------------------------------
// Progress file.

TEST(ProgressWriterTest, AppendsWholeLines) {
  const std::string path = TempPath("progress_lines");
  {
    std::ofstream existing(path, std::ios::trunc);
    existing << "progress samples=1 steps=1\n";  // From an earlier run.
  }
  absl::StatusOr<ProgressWriter> writer = ProgressWriter::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(writer->enabled());
  ASSERT_TRUE(writer->Progress(64, 2, std::nullopt).ok());
  ASSERT_TRUE(writer->Progress(128, 4, 0.75).ok());
  ASSERT_TRUE(writer->ShardDone(3).ok());
  ASSERT_TRUE(writer->TargetReached(0.125).ok());
  ASSERT_TRUE(writer->TargetReached(std::nullopt).ok());
  // No close needed: each line must already be in the file.
  EXPECT_EQ(ReadFile(path),
            "progress samples=1 steps=1\n"
            "progress samples=64 steps=2\n"
            "progress samples=128 steps=4 quality=0.75\n"
            "shard_done shard=3\n"
            "target_reached quality=0.125\n"
            "target_reached\n");
  std::remove(path.c_str());
}

TEST(ProgressWriterTest, EmptyPathIsDisabled) {
  absl::StatusOr<ProgressWriter> writer = ProgressWriter::Open("");
  ASSERT_TRUE(writer.ok());
  EXPECT_FALSE(writer->enabled());
  EXPECT_TRUE(writer->Progress(1, 1, std::nullopt).ok());
}

TEST(ProgressWriterTest, UnopenablePathFails) {
  absl::StatusOr<ProgressWriter> writer =
      ProgressWriter::Open("/nonexistent-dir-for-joule-test/progress");
  ASSERT_FALSE(writer.ok());
  EXPECT_THAT(std::string(writer.status().message()),
              HasSubstr("/nonexistent-dir-for-joule-test/progress"));
}

TEST(ProgressThrottleTest, AtMostOnePerInterval) {
  ProgressThrottle throttle(absl::Milliseconds(200));
  const MonotonicTime t0{};
  auto at = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  EXPECT_TRUE(throttle.Ready(at(0)));
  EXPECT_FALSE(throttle.Ready(at(1)));
  EXPECT_FALSE(throttle.Ready(at(199)));
  EXPECT_TRUE(throttle.Ready(at(200)));
  throttle.MarkWritten(at(300));
  EXPECT_FALSE(throttle.Ready(at(450)));
  EXPECT_TRUE(throttle.Ready(at(500)));
}

TEST(ProgressReporterTest, ThrottlesAndSkipsRepeats) {
  const std::string path = TempPath("progress_reporter");
  std::remove(path.c_str());
  absl::StatusOr<ProgressWriter> writer = ProgressWriter::Open(path);
  ASSERT_TRUE(writer.ok());
  ProgressReporter reporter(*std::move(writer), absl::Milliseconds(200));
  const MonotonicTime t0{};
  auto at = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  reporter.MaybeProgress(10, 1, at(0));     // Written.
  reporter.MaybeProgress(20, 2, at(50));    // Throttled.
  reporter.Progress(20, 2, 1.5, at(60));    // Forced, has quality.
  reporter.Progress(20, 2, std::nullopt, at(70));  // Repeat: skipped.
  reporter.MaybeProgress(20, 2, at(400));   // Repeat: skipped.
  reporter.MaybeProgress(30, 3, at(401));   // Written.
  reporter.ShardDone(0);
  EXPECT_EQ(ReadFile(path),
            "progress samples=10 steps=1\n"
            "progress samples=20 steps=2 quality=1.5\n"
            "progress samples=30 steps=3\n"
            "shard_done shard=0\n");
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Hints.

TEST(ParseHintsTest, ParsesKnownKeys) {
  std::vector<std::string> warnings;
  Hints hints = ParseHints(
      "# written by joule-agent\n"
      "batch_size=256\n"
      "shards=0-3,9\n"
      "stop=0\n"
      "device_speed=0.62\n"
      "future_key=whatever\n",
      &warnings);
  EXPECT_THAT(warnings, IsEmpty());
  EXPECT_EQ(hints.batch_size, 256);
  ASSERT_TRUE(hints.shards.has_value());
  EXPECT_THAT(*hints.shards, ElementsAre(0, 1, 2, 3, 9));
  EXPECT_EQ(hints.stop, false);
  EXPECT_DOUBLE_EQ(*hints.device_speed, 0.62);
}

TEST(ParseHintsTest, EmptyShardsMeansNone) {
  Hints hints = ParseHints("shards=\n", nullptr);
  ASSERT_TRUE(hints.shards.has_value());
  EXPECT_THAT(*hints.shards, IsEmpty());
}

TEST(ParseHintsTest, GarbageIsIgnoredWithWarnings) {
  std::vector<std::string> warnings;
  Hints hints = ParseHints(
      "this is not a hint\n"
      "=5\n"
      "batch_size=lots\n"
      "batch_size=0\n"
      "shards=7-2\n"
      "stop=maybe\n"
      "device_speed=0\n"
      "device_speed=1.5\n"
      "device_speed=nan\n"
      "\x01\x02\xff\xfe=\x80\n"  // Binary junk with an unknown key: ignored.
      "\r\n"
      "stop=1\r\n",  // CRLF line endings still work.
      &warnings);
  EXPECT_THAT(warnings, SizeIs(9));
  EXPECT_THAT(warnings[0], HasSubstr("line 1"));
  EXPECT_FALSE(hints.batch_size.has_value());
  EXPECT_FALSE(hints.shards.has_value());
  EXPECT_FALSE(hints.device_speed.has_value());
  EXPECT_EQ(hints.stop, true);
}

TEST(ParseHintsTest, LaterLinesWin) {
  Hints hints = ParseHints("batch_size=8\nbatch_size=16\n", nullptr);
  EXPECT_EQ(hints.batch_size, 16);
}

TEST(HintsReaderTest, MissingFileMeansNoHints) {
  HintsReader reader(TempPath("hints_missing"));
  EXPECT_FALSE(reader.Poll());
  EXPECT_EQ(reader.current(), Hints());
  HintsReader disabled("");
  EXPECT_FALSE(disabled.Poll());
}

TEST(HintsReaderTest, SeesAtomicRewrites) {
  const std::string path = TempPath("hints_rewrite");
  std::remove(path.c_str());
  HintsReader reader(path);
  EXPECT_FALSE(reader.Poll());

  WriteAtomically(path, "batch_size=64\n");
  EXPECT_TRUE(reader.Poll());
  EXPECT_EQ(reader.current().batch_size, 64);
  EXPECT_FALSE(reader.Poll());  // Unchanged.

  // Same size, written at once: found even if the timestamp did not move.
  WriteAtomically(path, "batch_size=32\n");
  EXPECT_TRUE(reader.Poll());
  EXPECT_EQ(reader.current().batch_size, 32);

  WriteAtomically(path, "batch_size=32\nshards=0-5\nstop=1\n");
  EXPECT_TRUE(reader.Poll());
  EXPECT_EQ(reader.current().stop, true);
  ASSERT_TRUE(reader.current().shards.has_value());
  EXPECT_THAT(*reader.current().shards, ElementsAre(0, 1, 2, 3, 4, 5));

  // Rewritten with the same content: no change to report.
  WriteAtomically(path, "batch_size=32\nshards=0-5\nstop=1\n");
  EXPECT_FALSE(reader.Poll());

  std::remove(path.c_str());
  EXPECT_TRUE(reader.Poll());
  EXPECT_EQ(reader.current(), Hints());
}

TEST(HintsReaderTest, GarbageFileDoesNotCrash) {
  const std::string path = TempPath("hints_garbage");
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>(i * 37));
  WriteAtomically(path, junk);
  HintsReader reader(path);
  reader.Poll();  // Whatever it returns, it must not crash.
  EXPECT_FALSE(reader.current().batch_size.has_value());
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Shard worklist.

TEST(ShardWorklistTest, ProcessesInAscendingOrder) {
  ShardWorklist work({3, 1, 2});
  std::vector<int> seen;
  while (std::optional<int> shard = work.Next()) {
    seen.push_back(*shard);
    work.FinishCurrent();
  }
  EXPECT_THAT(seen, ElementsAre(1, 2, 3));
  EXPECT_THAT(work.done(), ElementsAre(1, 2, 3));
}

TEST(ShardWorklistTest, FollowsOwnershipChanges) {
  ShardWorklist work({0, 1, 2});
  EXPECT_EQ(work.Next(), 0);
  work.FinishCurrent();
  EXPECT_EQ(work.Next(), 1);  // Now current.
  // Shard 1 (in progress) and 2 move away, 5 arrives, 0 comes back.
  work.SetOwned({0, 5});
  EXPECT_EQ(work.Next(), 1);  // The shard in progress is finished anyway.
  work.FinishCurrent();
  EXPECT_EQ(work.Next(), 5);  // 0 is done already, 2 is gone.
  work.FinishCurrent();
  EXPECT_EQ(work.Next(), std::nullopt);
  EXPECT_THAT(work.done(), ElementsAre(0, 1, 5));
}

// ---------------------------------------------------------------------------
// Simulated accelerator time.

TEST(EmulatedStepSleepTest, ScalesWithBatchAndSpeed) {
  const absl::Duration none = absl::ZeroDuration();
  EXPECT_EQ(EmulatedStepSleep(10.0, 64, 1.0, none), absl::Milliseconds(10));
  EXPECT_EQ(EmulatedStepSleep(10.0, 128, 1.0, none), absl::Milliseconds(20));
  EXPECT_EQ(EmulatedStepSleep(10.0, 32, 1.0, none), absl::Milliseconds(5));
  EXPECT_EQ(EmulatedStepSleep(10.0, 64, 0.5, none), absl::Milliseconds(20));
}

TEST(EmulatedStepSleepTest, SubtractsComputeTimeNeverNegative) {
  EXPECT_EQ(EmulatedStepSleep(10.0, 64, 1.0, absl::Milliseconds(3)),
            absl::Milliseconds(7));
  EXPECT_EQ(EmulatedStepSleep(10.0, 64, 1.0, absl::Milliseconds(30)),
            absl::ZeroDuration());
}

TEST(EmulatedStepSleepTest, OffAndDefensive) {
  EXPECT_EQ(EmulatedStepSleep(0.0, 64, 1.0, absl::ZeroDuration()),
            absl::ZeroDuration());
  EXPECT_EQ(EmulatedStepSleep(10.0, 0, 1.0, absl::ZeroDuration()),
            absl::ZeroDuration());
  // A zero speed would mean sleeping forever; it is clamped instead.
  EXPECT_LE(EmulatedStepSleep(10.0, 64, 0.0, absl::ZeroDuration()),
            absl::Seconds(1));
}

// ---------------------------------------------------------------------------
// Flags.

std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  return argv;
}

TEST(FlagSetTest, ParsesAllForms) {
  int epochs = 3;
  int64_t seed = 1;
  double lr = 0.1;
  std::string output;
  bool verbose = false;
  std::optional<double> target;
  std::optional<double> unset_target;
  FlagSet flags("prog");
  flags.AddInt("epochs", &epochs, "");
  flags.AddInt64("seed", &seed, "");
  flags.AddDouble("lr", &lr, "");
  flags.AddString("output", &output, "");
  flags.AddBool("verbose", &verbose, "");
  flags.AddOptionalDouble("target", &target, "");
  flags.AddOptionalDouble("unset-target", &unset_target, "");
  std::vector<std::string> args = {"prog",       "--epochs=5",  "--seed",
                                   "42",         "--lr=0.5",    "--output=/x",
                                   "--verbose",  "--target=0.25"};
  std::vector<char*> argv = Argv(args);
  ASSERT_TRUE(flags.Parse(argv.size(), argv.data()).ok());
  EXPECT_EQ(epochs, 5);
  EXPECT_EQ(seed, 42);
  EXPECT_EQ(lr, 0.5);
  EXPECT_EQ(output, "/x");
  EXPECT_TRUE(verbose);
  EXPECT_EQ(target, 0.25);
  EXPECT_FALSE(unset_target.has_value());
  EXPECT_TRUE(flags.IsSet("lr"));
  EXPECT_FALSE(flags.help_requested());
}

TEST(FlagSetTest, ErrorsNameTheFlag) {
  int epochs = 3;
  FlagSet flags("prog");
  flags.AddInt("epochs", &epochs, "");
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (Case c : std::vector<Case>{
           {{"prog", "--epochs=three"}, "--epochs"},
           {{"prog", "--epochs"}, "--epochs"},
           {{"prog", "--epoch=3"}, "--epoch"},
           {{"prog", "stray"}, "stray"},
       }) {
    std::vector<char*> argv = Argv(c.args);
    absl::Status status = flags.Parse(argv.size(), argv.data());
    ASSERT_FALSE(status.ok()) << c.args.back();
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.expected));
  }
}

TEST(FlagSetTest, HelpStopsParsing) {
  int epochs = 3;
  FlagSet flags("prog");
  flags.AddInt("epochs", &epochs, "passes");
  std::vector<std::string> args = {"prog", "--help", "--bogus"};
  std::vector<char*> argv = Argv(args);
  ASSERT_TRUE(flags.Parse(argv.size(), argv.data()).ok());
  EXPECT_TRUE(flags.help_requested());
  EXPECT_THAT(flags.Usage(), HasSubstr("--epochs"));
}

}  // namespace
}  // namespace joule::examples
