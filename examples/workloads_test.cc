// Runs the example workloads as real child processes, the way the agent
// starts them, and checks what they promise in the task contract: exit codes,
// stdout lines, the progress file, and reactions to the hints file and to
// SIGTERM.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "examples/task_contract.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::examples {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

using Env = std::map<std::string, std::string>;

std::string BinaryPath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "joule", "/examples/",
                      name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteAtomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(std::rename(temp.c_str(), path.c_str()), 0);
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// A workload started with exactly the given environment (as the agent does:
// nothing leaks in from the test's own environment), stdout and stderr
// redirected to files.
class Child {
 public:
  Child(const std::string& binary, const std::vector<std::string>& args,
        const Env& env, const std::string& dir) {
    stdout_path_ = dir + "/stdout";
    stderr_path_ = dir + "/stderr";
    std::vector<std::string> argv_storage = {binary};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<std::string> env_storage;
    for (const auto& [key, value] : env) {
      env_storage.push_back(absl::StrCat(key, "=", value));
    }
    std::vector<char*> argv, envp;
    for (std::string& s : argv_storage) argv.push_back(s.data());
    for (std::string& s : env_storage) envp.push_back(s.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);

    pid_ = ::fork();
    if (pid_ == 0) {
      // Child: only async-signal-safe calls from here on.
      const int out = ::open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out < 0 || err < 0) ::_exit(126);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }

  ~Child() {
    if (pid_ > 0 && !exit_code_.has_value()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  bool started() const { return pid_ > 0; }
  void Signal(int signo) { ::kill(pid_, signo); }

  // Exit code, or 128 + signal number if it was killed by a signal.
  int Wait() {
    if (!exit_code_.has_value()) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status)
                                     : 128 + WTERMSIG(status);
    }
    return *exit_code_;
  }

  std::string Stdout() const { return ReadFile(stdout_path_); }
  std::string Stderr() const { return ReadFile(stderr_path_); }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string stdout_path_;
  std::string stderr_path_;
};

struct Result {
  int exit_code;
  std::string out;
  std::string err;
};

// One parsed line of the progress file.
struct Event {
  std::string verb;
  std::map<std::string, std::string> fields;
};

// Parses the progress file strictly: every line must be a known verb
// followed by key=value fields with the keys the contract defines.
std::vector<Event> ParseProgressFile(const std::string& text) {
  std::vector<Event> events;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "unterminated last line";
  for (const std::string& line : Lines(text)) {
    std::vector<std::string> tokens = absl::StrSplit(line, ' ');
    Event event;
    event.verb = tokens[0];
    for (size_t i = 1; i < tokens.size(); ++i) {
      std::vector<std::string> kv = absl::StrSplit(tokens[i], absl::MaxSplits('=', 1));
      EXPECT_THAT(kv, SizeIs(2)) << "field \"" << tokens[i] << "\" in: " << line;
      if (kv.size() == 2) event.fields[kv[0]] = kv[1];
    }
    std::set<std::string> allowed;
    if (event.verb == "progress") {
      allowed = {"samples", "steps", "total", "quality", "batch", "latency_ms"};
      EXPECT_TRUE(event.fields.count("samples") && event.fields.count("steps"))
          << line;
    } else if (event.verb == "shard_done") {
      allowed = {"shard"};
      EXPECT_TRUE(event.fields.count("shard")) << line;
    } else if (event.verb == "target_reached") {
      allowed = {"quality"};
    } else if (event.verb == "waiting") {
      allowed = {};
    } else {
      ADD_FAILURE() << "unknown verb in: " << line;
    }
    for (const auto& [key, value] : event.fields) {
      EXPECT_TRUE(allowed.count(key)) << "unexpected key " << key << " in: " << line;
      double number;
      EXPECT_TRUE(absl::SimpleAtod(value, &number)) << "not a number in: " << line;
    }
    events.push_back(std::move(event));
  }
  return events;
}

int64_t Int(const Event& event, const std::string& key) {
  int64_t value = -1;
  EXPECT_TRUE(absl::SimpleAtoi(event.fields.at(key), &value));
  return value;
}

std::vector<int64_t> ProgressSamples(const std::vector<Event>& events) {
  std::vector<int64_t> samples;
  for (const Event& e : events) {
    if (e.verb == "progress") samples.push_back(Int(e, "samples"));
  }
  return samples;
}

std::vector<int> DoneShards(const std::vector<Event>& events) {
  std::vector<int> shards;
  for (const Event& e : events) {
    if (e.verb == "shard_done") shards.push_back(static_cast<int>(Int(e, "shard")));
  }
  return shards;
}

// Value of `key=` in a stdout line, as a double.
double Field(const std::string& line, const std::string& key) {
  for (absl::string_view token : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&token, key + "=")) {
      double value;
      if (absl::SimpleAtod(token, &value)) return value;
    }
  }
  ADD_FAILURE() << "no " << key << "= in: " << line;
  return std::nan("");
}

std::vector<std::string> LinesStartingWith(const std::string& text,
                                           const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& line : Lines(text)) {
    if (absl::StartsWith(line, prefix)) out.push_back(line);
  }
  return out;
}

// shard index -> checksum, from batch_infer's stdout.
std::map<int, std::string> Checksums(const std::string& out) {
  std::map<int, std::string> checksums;
  for (const std::string& line : LinesStartingWith(out, "shard ")) {
    int shard;
    char checksum[17] = {0};
    if (std::sscanf(line.c_str(), "shard %d: %*d samples, class histogram [%*[0-9,]], checksum %16s",
                    &shard, checksum) == 2) {
      checksums[shard] = checksum;
    } else {
      ADD_FAILURE() << "malformed shard line: " << line;
    }
  }
  return checksums;
}

class WorkloadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", info->name(), ".",
                        ::getpid());
    ASSERT_EQ(std::system(absl::StrCat("mkdir -p '", dir_, "'").c_str()), 0);
    progress_ = dir_ + "/progress";
    hints_ = dir_ + "/hints";
  }

  Result Run(const std::string& binary, const std::vector<std::string>& args,
             const Env& env, const std::string& run_name = "run") {
    const std::string run_dir = dir_ + "/" + run_name;
    EXPECT_EQ(std::system(absl::StrCat("mkdir -p '", run_dir, "'").c_str()), 0);
    Child child(BinaryPath(binary), args, env, run_dir);
    EXPECT_TRUE(child.started());
    const int code = child.Wait();
    return Result{code, child.Stdout(), child.Stderr()};
  }

  std::string dir_;
  std::string progress_;
  std::string hints_;
};

TEST_F(WorkloadsTest, TrainerLearnsAndReports) {
  Result r = Run("mlp_trainer", {"--epochs=3"},
                 {{"JOULE_JOB_ID", "job-1"},
                  {"JOULE_BATCH_SIZE", "32"},
                  {"JOULE_SHARDS", "0-2"},
                  {"JOULE_SHARD_COUNT", "4"},
                  {"JOULE_PROGRESS_FILE", progress_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> epochs = LinesStartingWith(r.out, "epoch ");
  ASSERT_THAT(epochs, SizeIs(3)) << r.out;
  EXPECT_LT(Field(epochs.back(), "val_loss"), Field(epochs.front(), "val_loss"))
      << r.out;
  EXPECT_EQ(Field(epochs.front(), "samples"), 3 * 256);
  const std::vector<std::string> done = LinesStartingWith(r.out, "done ");
  ASSERT_THAT(done, SizeIs(1)) << r.out;
  EXPECT_EQ(Field(done[0], "samples"), 3 * 3 * 256);

  const std::vector<Event> events = ParseProgressFile(ReadFile(progress_));
  const std::vector<int64_t> samples = ProgressSamples(events);
  ASSERT_FALSE(samples.empty());
  for (size_t i = 1; i < samples.size(); ++i) {
    EXPECT_GE(samples[i], samples[i - 1]) << "samples went backwards";
  }
  EXPECT_EQ(samples.back(), 3 * 3 * 256);
  // Not one line per step: 72 steps ran, the throttle must have kept lines
  // to about one per epoch on a run this fast.
  EXPECT_LT(samples.size(), 72u);
  // Each epoch reports the validation loss as the quality.
  int with_quality = 0;
  for (const Event& e : events) {
    if (e.verb == "progress" && e.fields.count("quality")) ++with_quality;
  }
  EXPECT_EQ(with_quality, 3);
  EXPECT_THAT(DoneShards(events), ElementsAre(0, 1, 2));
}

TEST_F(WorkloadsTest, TrainerWithoutEnvironmentUsesFlags) {
  Result r = Run("mlp_trainer",
                 {"--epochs=1", "--shards=2", "--samples-per-shard=64",
                  "--batch-size=16"},
                 {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> epochs = LinesStartingWith(r.out, "epoch ");
  ASSERT_THAT(epochs, SizeIs(1));
  EXPECT_EQ(Field(epochs[0], "samples"), 2 * 64);
  EXPECT_EQ(Field(LinesStartingWith(r.out, "done ")[0], "steps"), 2 * 64 / 16);
}

TEST_F(WorkloadsTest, TrainerReportsTargetOnce) {
  // A loss of 5 is beaten after the first epoch (ln 10 is about 2.3).
  Result r = Run("mlp_trainer", {"--epochs=3", "--target-loss=5"},
                 {{"JOULE_PROGRESS_FILE", progress_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int targets = 0;
  for (const Event& e : ParseProgressFile(ReadFile(progress_))) {
    if (e.verb == "target_reached") {
      ++targets;
      EXPECT_TRUE(e.fields.count("quality"));
    }
  }
  EXPECT_EQ(targets, 1);
  EXPECT_THAT(LinesStartingWith(r.out, "epoch "), SizeIs(3));
}

TEST_F(WorkloadsTest, TrainerCanStopAtTarget) {
  Result r = Run("mlp_trainer",
                 {"--epochs=5", "--target-loss=5", "--stop-at-target"},
                 {{"JOULE_PROGRESS_FILE", progress_}, {"JOULE_SHARDS", "1,3"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(LinesStartingWith(r.out, "epoch "), SizeIs(1));
  EXPECT_THAT(DoneShards(ParseProgressFile(ReadFile(progress_))),
              ElementsAre(1, 3));
}

TEST_F(WorkloadsTest, TrainerFollowsHintedShardsAndBatchSize) {
  WriteAtomically(hints_, "shards=0-1\nbatch_size=64\n");
  Result r = Run("mlp_trainer", {"--epochs=2"},
                 {{"JOULE_SHARDS", "0"},
                  {"JOULE_SHARD_COUNT", "4"},
                  {"JOULE_BATCH_SIZE", "16"},
                  {"JOULE_PROGRESS_FILE", progress_},
                  {"JOULE_HINTS_FILE", hints_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& epoch : LinesStartingWith(r.out, "epoch ")) {
    EXPECT_EQ(Field(epoch, "samples"), 2 * 256) << epoch;
  }
  // 2 epochs x 2 shards x 256 samples at batch 64 from the hints, not 16.
  EXPECT_EQ(Field(LinesStartingWith(r.out, "done ")[0], "steps"), 16);
  EXPECT_THAT(DoneShards(ParseProgressFile(ReadFile(progress_))),
              ElementsAre(0, 1));
}

TEST_F(WorkloadsTest, BatchInferChecksumsAreDeterministicPerShard) {
  const Env env = {{"JOULE_SHARDS", "0-1"},
                   {"JOULE_SHARD_COUNT", "4"},
                   {"JOULE_BATCH_SIZE", "64"},
                   {"JOULE_PROGRESS_FILE", progress_}};
  const std::string output = dir_ + "/output";
  Result first = Run("batch_infer", {"--output=" + output}, env, "first");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  Result second = Run("batch_infer", {}, env, "second");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  Env other_batch = env;
  other_batch["JOULE_BATCH_SIZE"] = "7";
  Result third = Run("batch_infer", {}, other_batch, "third");
  ASSERT_EQ(third.exit_code, 0) << third.err;

  const std::map<int, std::string> a = Checksums(first.out);
  ASSERT_THAT(a, SizeIs(2)) << first.out;
  EXPECT_EQ(a, Checksums(second.out));
  EXPECT_EQ(a, Checksums(third.out)) << "checksum depends on the batch size";
  EXPECT_NE(a.at(0), a.at(1));
  // A different seed gives different outputs for the same shard.
  Result seeded = Run("batch_infer", {"--seed=2"}, env, "seeded");
  ASSERT_EQ(seeded.exit_code, 0) << seeded.err;
  EXPECT_NE(Checksums(seeded.out).at(0), a.at(0));

  // --output holds exactly the per-shard lines.
  std::string shard_lines;
  for (const std::string& line : LinesStartingWith(first.out, "shard ")) {
    shard_lines += line + "\n";
  }
  EXPECT_EQ(ReadFile(output), shard_lines);

  // All runs appended to the same progress file; each reported both shards.
  const std::vector<Event> events = ParseProgressFile(ReadFile(progress_));
  EXPECT_THAT(DoneShards(events), ElementsAre(0, 1, 0, 1, 0, 1, 0, 1));
}

TEST_F(WorkloadsTest, BatchInferPicksUpShardsFromHints) {
  WriteAtomically(hints_, "shards=0-2\nbatch_size=100\n");
  Result r = Run("batch_infer", {"--samples-per-shard=128"},
                 {{"JOULE_SHARDS", "0"},
                  {"JOULE_SHARD_COUNT", "8"},
                  {"JOULE_PROGRESS_FILE", progress_},
                  {"JOULE_HINTS_FILE", hints_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<Event> events = ParseProgressFile(ReadFile(progress_));
  EXPECT_THAT(DoneShards(events), ElementsAre(0, 1, 2));
  const std::vector<int64_t> samples = ProgressSamples(events);
  ASSERT_FALSE(samples.empty());
  EXPECT_EQ(samples.back(), 3 * 128);
  // batch_size=100 from the hints: 128 samples take two steps per shard.
  EXPECT_EQ(Field(LinesStartingWith(r.out, "done ")[0], "steps"), 6);
}

TEST_F(WorkloadsTest, BatchInferWaitsForHandedOverShards) {
  // Starts owning nothing; the "scheduler" hands over shard 5 while the task
  // idles, which it must process before leaving.
  Child child(BinaryPath("batch_infer"), {"--idle-wait-ms=30000"},
              {{"JOULE_SHARDS", ""},
               {"JOULE_SHARD_COUNT", "8"},
               {"JOULE_PROGRESS_FILE", progress_},
               {"JOULE_HINTS_FILE", hints_}},
              dir_);
  ASSERT_TRUE(child.started());
  WriteAtomically(hints_, "shards=5\n");
  // Then, once shard 5 is reported done, ask it to leave.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!absl::StrContains(ReadFile(progress_), "shard_done shard=5") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  WriteAtomically(hints_, "shards=5\nstop=1\n");
  ASSERT_EQ(child.Wait(), 0) << child.Stderr();
  EXPECT_THAT(DoneShards(ParseProgressFile(ReadFile(progress_))), ElementsAre(5));
}

TEST_F(WorkloadsTest, StopHintEndsBothWorkloadsEarly) {
  WriteAtomically(hints_, "stop=1\n");
  const Env env = {{"JOULE_PROGRESS_FILE", progress_}, {"JOULE_HINTS_FILE", hints_}};
  for (const std::string binary : {"mlp_trainer", "batch_infer"}) {
    std::remove(progress_.c_str());
    Result r = Run(binary, {}, env, binary);
    ASSERT_EQ(r.exit_code, 0) << binary << ": " << r.err;
    const std::vector<std::string> done = LinesStartingWith(r.out, "done ");
    ASSERT_THAT(done, SizeIs(1)) << binary << ": " << r.out;
    EXPECT_EQ(Field(done[0], "stopped"), 1) << binary;
    EXPECT_EQ(Field(done[0], "samples"), 0) << binary;
    EXPECT_THAT(DoneShards(ParseProgressFile(ReadFile(progress_))), IsEmpty())
        << binary;
  }
}

TEST_F(WorkloadsTest, MalformedShardsExitTwoNamingTheVariable) {
  for (const std::string binary : {"mlp_trainer", "batch_infer"}) {
    Result r = Run(binary, {}, {{"JOULE_SHARDS", "0-3,5-x"}}, binary);
    EXPECT_EQ(r.exit_code, 2) << binary;
    EXPECT_THAT(r.err, HasSubstr("JOULE_SHARDS")) << binary;
    EXPECT_THAT(r.err, HasSubstr("5-x")) << binary;
    EXPECT_THAT(r.out, IsEmpty()) << binary;
  }
}

TEST_F(WorkloadsTest, BadFlagsAndEnvironmentExitTwo) {
  struct Case {
    std::string binary;
    std::vector<std::string> args;
    Env env;
    std::string named;
  };
  const std::vector<Case> cases = {
      {"mlp_trainer", {"--epochs=many"}, {}, "--epochs"},
      {"mlp_trainer", {"--epochs=0"}, {}, "--epochs"},
      {"mlp_trainer", {"--no-such-flag"}, {}, "--no-such-flag"},
      {"mlp_trainer", {}, {{"JOULE_BATCH_SIZE", "0"}}, "JOULE_BATCH_SIZE"},
      {"batch_infer", {"--sim-step-ms=-1"}, {}, "--sim-step-ms"},
      {"batch_infer", {}, {{"JOULE_SHARDS", "9"}, {"JOULE_SHARD_COUNT", "4"}},
       "JOULE_SHARDS"},
      {"batch_infer",
       {},
       {{"JOULE_PROGRESS_FILE", "/nonexistent-joule-dir/progress"}},
       "JOULE_PROGRESS_FILE"},
  };
  int i = 0;
  for (const Case& c : cases) {
    Result r = Run(c.binary, c.args, c.env, absl::StrCat("case", i++));
    EXPECT_EQ(r.exit_code, 2) << c.binary << " " << c.named;
    EXPECT_THAT(r.err, HasSubstr(c.named)) << c.binary;
  }
}

TEST_F(WorkloadsTest, SigtermFinishesStepAndExits143) {
  // Slow steps (simulated accelerator) and many epochs: it would run for
  // minutes unless the signal ends it.
  Child child(BinaryPath("mlp_trainer"), {"--sim-step-ms=20", "--epochs=1000"},
              {{"JOULE_PROGRESS_FILE", progress_}}, dir_);
  ASSERT_TRUE(child.started());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ReadFile(progress_).empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(ReadFile(progress_).empty()) << "no progress within 20 s";
  child.Signal(SIGTERM);
  EXPECT_EQ(child.Wait(), 143) << child.Stderr();
  const std::vector<std::string> lines = Lines(child.Stdout());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "terminated");
  // The final progress line was written before leaving.
  const std::vector<int64_t> samples =
      ProgressSamples(ParseProgressFile(ReadFile(progress_)));
  ASSERT_FALSE(samples.empty());
  EXPECT_GT(samples.back(), 0);
}

TEST_F(WorkloadsTest, SimulatedDeviceSpeedStretchesSteps) {
  // 4 steps of 64 samples at 20 ms each: at least 80 ms at full speed and at
  // least 160 ms at half speed. Only lower bounds: a loaded machine can be
  // slower, never faster.
  const Env env = {{"JOULE_SHARDS", "0"}, {"JOULE_BATCH_SIZE", "64"},
                   {"JOULE_HINTS_FILE", hints_}};
  auto timed = [&](const std::string& name) {
    const auto start = std::chrono::steady_clock::now();
    Result r = Run("batch_infer", {"--sim-step-ms=20", "--samples-per-shard=256"},
                   env, name);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::chrono::steady_clock::now() - start;
  };
  EXPECT_GE(timed("full"), std::chrono::milliseconds(80));
  WriteAtomically(hints_, "device_speed=0.5\n");
  EXPECT_GE(timed("half"), std::chrono::milliseconds(160));
}

}  // namespace
}  // namespace joule::examples
