#include "agent/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/devices.h"
#include "agent/process/process_test_util.h"
#include "agent/process/task_cgroup.h"
#include "agent/process/task_process.h"
#include "agent/process/task_reaper.h"
#include "agent/task_users.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Generous, for a loaded machine: tests poll and stop as soon as the
// condition holds, so this bounds only failures.
constexpr absl::Duration kDeadline = absl::Seconds(20);
constexpr absl::Duration kPollInterval = absl::Milliseconds(5);

// V100 figures from the device catalog (common/device_catalog.cc).
constexpr double kV100IdleW = 35;
constexpr double kV100DefaultCapW = 250;
constexpr double kV100MinClockFraction = 135.0 / 1380.0;
// A busy V100 draws idle + 0.9 * (max - idle) uncapped.
constexpr double kV100BusyW = 35 + 0.9 * (250 - 35);  // 228.5 W

// The estimated CPU of every test node.
constexpr double kCpuTdpW = 100;
constexpr double kCpuIdleW = 20;

constexpr double kStaticPowerW = 100;

// Shell snippet that blocks until the test creates `go` in the task's
// working directory (its task directory).
constexpr char kWaitForGo[] = "while [ ! -e go ]; do sleep 0.01; done";

// The device_speed hint the agent should write for a busy V100 capped at
// `cap_w`, by the model in agent/devices.h, as the hints file formats it.
std::string V100SpeedHint(double cap_w) {
  const double power = std::min(cap_w, kV100BusyW);
  const double f = std::clamp(
      std::cbrt((power - kV100IdleW) / (kV100BusyW - kV100IdleW)),
      kV100MinClockFraction, 1.0);
  return absl::StrFormat("%.4f", 1.0 / (0.35 + 0.65 / f));
}

// A task id no other test process on this machine uses: for tests whose
// agent finds processes by task id in the real /proc, where a concurrent
// run of the same test would otherwise see (and kill) this one's tasks.
std::string UniqueTaskId(const std::string& base) {
  return absl::StrCat(base, "-", getpid());
}

// Polls `done` until it returns true or kDeadline passes.
bool PollUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(kPollInterval);
  }
  return true;
}

std::string MakeTempDir() {
  std::string tmpl = absl::StrCat(::testing::TempDir(), "/agent_XXXXXX");
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp: " << std::strerror(errno);
  return tmpl;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

void AppendFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << contents;
}

// `key=value` lines (env output, hints files), split at the first '='.
std::map<std::string, std::string> ReadKeyValues(const std::string& path) {
  std::map<std::string, std::string> out;
  for (absl::string_view line :
       absl::StrSplit(ReadAll(path), '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    out[kv.first] = kv.second;
  }
  return out;
}

int CountLines(const std::string& path) {
  const std::string text = ReadAll(path);
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// Records what the agent sends. Thread-safe; guarded by mu_.
class FakeSink : public MessageSink {
 public:
  void Send(const v1::AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(message);
  }

  // Every task event for `task_id`, in the order sent.
  std::vector<v1::TaskEvent> Events(const std::string& task_id) const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::TaskEvent> events;
    for (const v1::AgentMessage& m : messages_) {
      if (m.has_task_event() && m.task_event().task_id() == task_id) {
        events.push_back(m.task_event());
      }
    }
    return events;
  }

  std::optional<v1::TaskEvent> FirstEvent(const std::string& task_id,
                                          v1::TaskEvent::Kind kind) const {
    for (const v1::TaskEvent& event : Events(task_id)) {
      if (event.kind() == kind) return event;
    }
    return std::nullopt;
  }

  std::vector<v1::NodeSample> Telemetry() const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::NodeSample> samples;
    for (const v1::AgentMessage& m : messages_) {
      if (m.has_telemetry()) samples.push_back(m.telemetry());
    }
    return samples;
  }

  std::vector<v1::LogsReply> Logs() const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::LogsReply> replies;
    for (const v1::AgentMessage& m : messages_) {
      if (m.has_logs()) replies.push_back(m.logs());
    }
    return replies;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::AgentMessage> messages_ ABSL_GUARDED_BY(mu_);
};

// A fixture procfs holding only `stat`, whose aggregate cpu line has busy and
// idle tick counters the test advances.
class ProcStatFixture {
 public:
  explicit ProcStatFixture(std::string root) : root_(std::move(root)) {
    EXPECT_EQ(mkdir(root_.c_str(), 0755), 0) << std::strerror(errno);
    Write();
  }

  const std::string& root() const { return root_; }

  void AddTicks(uint64_t busy, uint64_t idle) {
    busy_ += busy;
    idle_ += idle;
    Write();
  }

 private:
  void Write() {
    // user nice system idle iowait irq softirq steal guest guest_nice
    WriteFile(root_ + "/stat",
              absl::StrFormat("cpu  %d 0 0 %d 0 0 0 0 0 0\n"
                              "cpu0 %d 0 0 %d 0 0 0 0 0 0\n",
                              busy_, idle_, busy_, idle_));
  }

  const std::string root_;
  uint64_t busy_ = 1000;
  uint64_t idle_ = 9000;
};

// The user tasks run as unless a test says otherwise: mapped to root, so
// that they may write into the test's own (root-only) temp directory.
constexpr char kRootUser[] = "local";

// Fluent builder for a StartTask command.
class StartBuilder {
 public:
  explicit StartBuilder(const std::string& task_id) {
    start_.set_task_id(task_id);
    start_.set_user(kRootUser);
    start_.set_job_id("job-1");
    start_.set_attempt(1);
    start_.set_replica_index(0);
    start_.set_replica_count(1);
    start_.set_batch_size(32);
  }
  StartBuilder& Job(const std::string& job_id) {
    start_.set_job_id(job_id);
    return *this;
  }
  StartBuilder& User(const std::string& user) {
    start_.set_user(user);
    return *this;
  }
  StartBuilder& Shell(const std::string& script) {
    return Command("/bin/sh", {"-c", script});
  }
  StartBuilder& Command(const std::string& path,
                        const std::vector<std::string>& args) {
    start_.set_command(path);
    start_.clear_args();
    for (const std::string& arg : args) start_.add_args(arg);
    return *this;
  }
  StartBuilder& Gpus(const std::vector<int32_t>& indices) {
    start_.clear_gpu_indices();
    for (int32_t index : indices) start_.add_gpu_indices(index);
    return *this;
  }
  StartBuilder& Cap(double watts) {
    start_.set_power_cap_w(watts);
    return *this;
  }
  StartBuilder& Env(const std::string& key, const std::string& value) {
    (*start_.mutable_env())[key] = value;
    return *this;
  }
  StartBuilder& Replica(int32_t index, int32_t count) {
    start_.set_replica_index(index);
    start_.set_replica_count(count);
    return *this;
  }
  StartBuilder& Batch(int32_t batch_size) {
    start_.set_batch_size(batch_size);
    return *this;
  }
  StartBuilder& Shards(const std::string& shards, int32_t count) {
    start_.set_shards(shards);
    start_.set_shard_count(count);
    return *this;
  }
  StartBuilder& Rendezvous(const std::string& address, int32_t port) {
    start_.set_master_addr(address);
    start_.set_master_port(port);
    return *this;
  }
  v1::SchedulerCommand Build() const {
    v1::SchedulerCommand command;
    *command.mutable_start_task() = start_;
    return command;
  }

 private:
  v1::StartTask start_;
};

v1::SchedulerCommand StopCommand(const std::string& task_id,
                                 absl::Duration grace) {
  v1::SchedulerCommand command;
  command.mutable_stop_task()->set_task_id(task_id);
  command.mutable_stop_task()->set_reason("test");
  *command.mutable_stop_task()->mutable_grace_period() = ToProtoDuration(grace);
  return command;
}

v1::SchedulerCommand SetCapCommand(int32_t gpu_index, double watts) {
  v1::SchedulerCommand command;
  command.mutable_set_cap()->set_index(gpu_index);
  command.mutable_set_cap()->set_power_cap_w(watts);
  command.mutable_set_cap()->set_reason("test");
  return command;
}

v1::SchedulerCommand HintsCommand(const std::string& task_id, int32_t batch_size,
                                  const std::string& shards, bool stop) {
  v1::SchedulerCommand command;
  v1::UpdateHints* hints = command.mutable_update_hints();
  hints->set_task_id(task_id);
  hints->set_batch_size(batch_size);
  hints->set_shards(shards);
  hints->set_stop(stop);
  return command;
}

v1::SchedulerCommand AckCommand(const std::string& task_id) {
  v1::SchedulerCommand command;
  command.mutable_ack_task_event()->set_task_id(task_id);
  return command;
}

v1::SchedulerCommand FetchLogsCommand(const std::string& request_id,
                                      const std::string& task_id,
                                      int64_t max_bytes) {
  v1::SchedulerCommand command;
  command.mutable_fetch_logs()->set_request_id(request_id);
  command.mutable_fetch_logs()->set_task_id(task_id);
  command.mutable_fetch_logs()->set_max_bytes(max_bytes);
  return command;
}

// The pointers FindGpu and FindUsage return point into `sample`: hold the
// sample in a variable, unless the pointer is used only within the statement
// that made the temporary.
const v1::DeviceSample* FindGpu(const v1::NodeSample& sample, int32_t index) {
  for (const v1::DeviceSample& device : sample.devices()) {
    if (device.kind() == v1::DEVICE_KIND_GPU && device.index() == index) {
      return &device;
    }
  }
  return nullptr;
}

const v1::TaskUsage* FindUsage(const v1::NodeSample& sample,
                               const std::string& task_id) {
  for (const v1::TaskUsage& usage : sample.tasks()) {
    if (usage.task_id() == task_id) return &usage;
  }
  return nullptr;
}

std::vector<std::string> UnackedIds(const v1::Register& reg) {
  std::vector<std::string> ids;
  for (const v1::TaskEvent& event : reg.unacked_events()) {
    ids.push_back(event.task_id());
  }
  return ids;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_dir_ = MakeTempDir();
    cpu_stat_ = std::make_unique<ProcStatFixture>(work_dir_ + "/procfs");
  }

  // Nothing a test starts outlives it.
  void TearDown() override {
    if (agent_ == nullptr) return;
    agent_->StopAllTasks(absl::ZeroDuration());
    EXPECT_TRUE(PollUntil([&] {
      agent_->Tick();
      return agent_->running_tasks() == 0;
    }));
  }

  // A node with `gpus` simulated V100s, an estimated CPU reading the fixture
  // /proc/stat, and kStaticPowerW. `task_procfs` is where the agent reads
  // per-process files (task CPU time, environ); the fixture by default.
  Agent& MakeAgent(int gpus, std::string task_procfs = "",
                   CapJournal* journal = nullptr,
                   std::vector<std::unique_ptr<GpuDevice>> devices = {}) {
    for (int i = 0; i < gpus; ++i) {
      devices.push_back(std::make_unique<SimulatedGpu>(
          i, *FindGpuModel("V100"), "node-a", clock_.Now()));
    }
    AgentOptions options;
    options.node_name = "node-a";
    options.work_dir = work_dir_;
    options.procfs_root = task_procfs.empty() ? cpu_stat_->root() : task_procfs;
    options.labels = {{"zone", "test"}};
    options.cpus = 8;
    options.memory_bytes = int64_t{64} << 30;
    options.static_power_w = kStaticPowerW;
    options.base_env = {{"PATH", "/usr/bin:/bin"}, {"HOME", "/home/joule"}};
    options.task_users = task_users_;
    options.allow_root_tasks = allow_root_tasks_;
    options.min_task_uid = min_task_uid_;
    options.task_cgroup_root = task_cgroup_root_;
    options.address = "10.0.0.7";
    options.task_port_min = task_ports_.first;
    options.task_port_max = task_ports_.second;
    agent_ = std::make_unique<Agent>(
        std::move(options), std::move(devices),
        std::make_unique<EstimatedCpu>(cpu_stat_->root(), kCpuTdpW, kCpuIdleW),
        &clock_, journal);
    agent_->SetSink(&sink_);
    return *agent_;
  }

  std::string TaskDir(const std::string& task_id) const {
    return absl::StrCat(work_dir_, "/tasks/", task_id);
  }

  std::string HintsPath(const std::string& task_id) const {
    return absl::StrCat(work_dir_, "/hints/", task_id);
  }

  // Lets a task running kWaitForGo finish.
  void Release(const std::string& task_id) {
    WriteFile(TaskDir(task_id) + "/go", "");
  }

  // Ticks the agent until it reports `kind` for the task.
  std::optional<v1::TaskEvent> WaitForEvent(const std::string& task_id,
                                            v1::TaskEvent::Kind kind) {
    std::optional<v1::TaskEvent> event;
    PollUntil([&] {
      agent_->Tick();
      return (event = sink_.FirstEvent(task_id, kind)).has_value();
    });
    return event;
  }

  bool WaitForFile(const std::string& path) {
    return PollUntil([&] { return FileExists(path); });
  }

  v1::NodeSample Telemetry() {
    agent_->SendTelemetry();
    std::vector<v1::NodeSample> samples = sink_.Telemetry();
    EXPECT_FALSE(samples.empty());
    return samples.empty() ? v1::NodeSample() : samples.back();
  }

  FakeClock clock_;
  FakeSink sink_;
  std::string work_dir_;
  std::unique_ptr<ProcStatFixture> cpu_stat_;
  // Who tasks may run as, for MakeAgent.
  std::optional<TaskUserMap> task_users_ =
      TaskUserMap{{kRootUser, TaskIdentity{kRootUser, 0, 0, {}, ""}}};
  bool allow_root_tasks_ = true;
  int64_t min_task_uid_ = 1000;
  // The rendezvous ports the agent hands out, for MakeAgent.
  std::pair<int32_t, int32_t> task_ports_ = {0, 0};
  std::string task_cgroup_root_;
  std::unique_ptr<Agent> agent_;
};

// ---------------------------------------------------------------------------
// Starting tasks and reporting their exits.

TEST_F(AgentTest, StartTaskPassesTheTaskContractEnvironment) {
  Agent& agent = MakeAgent(2);
  // The agent's own environment must not leak into the task.
  ASSERT_EQ(setenv("JOULE_AGENT_TEST_LEAK", "1", 1), 0);
  agent.HandleCommand(StartBuilder("task-env")
                          .Job("job-env")
                          .Shell("env > env.txt; cat \"$JOULE_HINTS_FILE\" > hints.txt")
                          .Gpus({0, 1})
                          .Replica(1, 4)
                          .Batch(48)
                          .Shards("2,5", 8)
                          .Env("MY_SETTING", "a b=c")
                          .Build());
  unsetenv("JOULE_AGENT_TEST_LEAK");

  std::optional<v1::TaskEvent> started =
      sink_.FirstEvent("task-env", v1::TaskEvent::KIND_STARTED);
  ASSERT_TRUE(started.has_value());
  EXPECT_GT(started->pid(), 1);
  EXPECT_EQ(started->job_id(), "job-env");
  EXPECT_EQ(FromProtoTime(started->time()), clock_.Now());
  ASSERT_TRUE(WaitForEvent("task-env", v1::TaskEvent::KIND_EXITED).has_value());

  const std::string dir = TaskDir("task-env");
  std::map<std::string, std::string> env = ReadKeyValues(dir + "/env.txt");
  EXPECT_EQ(env["JOULE_JOB_ID"], "job-env");
  EXPECT_EQ(env["JOULE_TASK_ID"], "task-env");
  EXPECT_EQ(env["JOULE_TASK_DIR"], dir);
  EXPECT_EQ(env["JOULE_REPLICA_INDEX"], "1");
  EXPECT_EQ(env["JOULE_REPLICA_COUNT"], "4");
  EXPECT_EQ(env["JOULE_BATCH_SIZE"], "48");
  EXPECT_EQ(env["JOULE_SHARDS"], "2,5");
  EXPECT_EQ(env["JOULE_SHARD_COUNT"], "8");
  EXPECT_EQ(env["JOULE_PROGRESS_FILE"], dir + "/progress");
  EXPECT_EQ(env["JOULE_HINTS_FILE"], HintsPath("task-env"));
  EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], "0,1");
  EXPECT_EQ(env["MY_SETTING"], "a b=c");
  EXPECT_EQ(env["PATH"], "/usr/bin:/bin");
  EXPECT_EQ(env["HOME"], "/home/joule");
  EXPECT_EQ(env["USER"], kRootUser);
  EXPECT_EQ(env.count("JOULE_AGENT_TEST_LEAK"), 0u);
  // The hints file exists before the task runs; it goes with the task.
  EXPECT_FALSE(FileExists(HintsPath("task-env")));
  std::map<std::string, std::string> hints = ReadKeyValues(dir + "/hints.txt");
  EXPECT_EQ(hints["batch_size"], "48");
  EXPECT_EQ(hints["shards"], "2,5");
  EXPECT_EQ(hints["stop"], "0");
}

// A free TCP port on this host, as the OS hands them out.
int32_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof(address);
  const bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  if (fd >= 0) close(fd);
  return ok ? ntohs(address.sin_port) : 0;
}

// Every replica gets the environment torch.distributed expects; replica 0
// holds the gang's port while it runs and refuses, as the node's state, a
// port outside the range, another task's, or one something else listens on.
TEST_F(AgentTest, GangsGetTheRendezvousEnvironmentAndReplicaZeroHoldsItsPort) {
  const int32_t port = FreePort();
  ASSERT_GT(port, 0);
  const int32_t other = FreePort();
  ASSERT_GT(other, 0);
  task_ports_ = {std::min(port, other), std::max(port, other)};
  Agent& agent = MakeAgent(1);
  v1::Register reg = agent.MakeRegister();
  EXPECT_EQ(reg.node().address(), "10.0.0.7");
  EXPECT_EQ(reg.node().task_port_min(), task_ports_.first);
  EXPECT_EQ(reg.node().task_port_max(), task_ports_.second);

  agent.HandleCommand(StartBuilder("g.r0.a1")
                          .Shell("env > env.txt; exec sleep 30")
                          .Replica(0, 2)
                          .Rendezvous("10.0.0.7", port)
                          .Build());
  ASSERT_TRUE(sink_.FirstEvent("g.r0.a1", v1::TaskEvent::KIND_STARTED).has_value());
  // Another gang's replica 0 asking for the same port.
  agent.HandleCommand(
      StartBuilder("h.r0.a1").Shell("exit 0").Replica(0, 2).Rendezvous("10.0.0.7", port).Build());
  std::vector<v1::TaskEvent> events = sink_.Events("h.r0.a1");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED);
  EXPECT_TRUE(events[0].node_busy());
  EXPECT_THAT(events[0].message(), HasSubstr(absl::StrCat("rendezvous port ", port,
                                                          " is held by another task")));
  // Outside the range.
  agent.HandleCommand(StartBuilder("i.r0.a1").Shell("exit 0").Replica(0, 2).Rendezvous(
      "10.0.0.7", 1025).Build());
  events = sink_.Events("i.r0.a1");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].node_busy());
  EXPECT_THAT(events[0].message(), HasSubstr("outside this node's range"));
  // Something else on the node listens on the other port.
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(static_cast<uint16_t>(other));
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    agent.HandleCommand(StartBuilder("j.r0.a1").Shell("exit 0").Replica(0, 2).Rendezvous(
        "10.0.0.7", other).Build());
    close(fd);
  }
  events = sink_.Events("j.r0.a1");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].node_busy());
  EXPECT_THAT(events[0].message(), HasSubstr("in use on this node"));
  // Replica 1 of the first gang, on this node too: it meets replica 0 there
  // and holds nothing.
  agent.HandleCommand(StartBuilder("g.r1.a1")
                          .Shell("env > env.txt")
                          .Replica(1, 2)
                          .Rendezvous("10.0.0.7", port)
                          .Build());
  ASSERT_TRUE(WaitForEvent("g.r1.a1", v1::TaskEvent::KIND_EXITED).has_value());
  std::map<std::string, std::string> env = ReadKeyValues(TaskDir("g.r1.a1") + "/env.txt");
  EXPECT_EQ(env["MASTER_ADDR"], "10.0.0.7");
  EXPECT_EQ(env["MASTER_PORT"], absl::StrCat(port));
  EXPECT_EQ(env["WORLD_SIZE"], "2");
  EXPECT_EQ(env["RANK"], "1");
  EXPECT_EQ(env["LOCAL_RANK"], "0");
  EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "1");
  env = ReadKeyValues(TaskDir("g.r0.a1") + "/env.txt");
  EXPECT_EQ(env["RANK"], "0");
  EXPECT_EQ(env["MASTER_PORT"], absl::StrCat(port));
}

TEST_F(AgentTest, ExitIsReportedWithItsCodeAndKeptUntilAcked) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(StartBuilder("t-zero").Shell("exit 0").Build());
  agent.HandleCommand(
      StartBuilder("t-three").Job("job-3").Shell("exit 3").Build());
  std::optional<v1::TaskEvent> zero =
      WaitForEvent("t-zero", v1::TaskEvent::KIND_EXITED);
  std::optional<v1::TaskEvent> three =
      WaitForEvent("t-three", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(zero.has_value());
  ASSERT_TRUE(three.has_value());

  EXPECT_EQ(zero->exit_code(), 0);
  EXPECT_EQ(zero->signal(), 0);
  EXPECT_FALSE(zero->stopped());
  EXPECT_EQ(zero->job_id(), "job-1");
  EXPECT_EQ(zero->pid(),
            sink_.FirstEvent("t-zero", v1::TaskEvent::KIND_STARTED)->pid());
  EXPECT_EQ(three->exit_code(), 3);
  EXPECT_EQ(three->signal(), 0);
  EXPECT_FALSE(three->stopped());
  EXPECT_EQ(three->job_id(), "job-3");
  EXPECT_EQ(three->usage().task_id(), "t-three");
  EXPECT_EQ(agent.running_tasks(), 0);
  // The hints file is gone with the task.
  EXPECT_FALSE(FileExists(HintsPath("t-zero")));

  // Final events stay in every registration until acknowledged; STARTED
  // events are never kept.
  v1::Register reg = agent.MakeRegister();
  EXPECT_THAT(reg.running_tasks(), IsEmpty());
  EXPECT_THAT(UnackedIds(reg), ElementsAre("t-three", "t-zero"));
  for (const v1::TaskEvent& event : reg.unacked_events()) {
    EXPECT_EQ(event.kind(), v1::TaskEvent::KIND_EXITED);
    EXPECT_EQ(event.exit_code(), event.task_id() == "t-three" ? 3 : 0);
  }
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), ElementsAre("t-three", "t-zero"));

  agent.HandleCommand(AckCommand("t-zero"));
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), ElementsAre("t-three"));
  agent.HandleCommand(AckCommand("no-such-task"));
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), ElementsAre("t-three"));
  agent.HandleCommand(AckCommand("t-three"));
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), IsEmpty());
}

TEST_F(AgentTest, RepeatedStartRunsOneProcessAndAnswersWithTheTaskState) {
  Agent& agent = MakeAgent(1);
  const v1::SchedulerCommand start =
      StartBuilder("t-once")
          .Shell(absl::StrCat("echo started >> starts; ", kWaitForGo))
          .Gpus({0})
          .Build();
  const std::string starts = TaskDir("t-once") + "/starts";

  agent.HandleCommand(start);
  ASSERT_TRUE(PollUntil([&] { return CountLines(starts) == 1; }));
  agent.HandleCommand(start);  // While it runs.
  std::vector<v1::TaskEvent> events = sink_.Events("t-once");
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_STARTED);
  EXPECT_EQ(events[1].kind(), v1::TaskEvent::KIND_STARTED);
  EXPECT_EQ(events[1].pid(), events[0].pid());
  EXPECT_EQ(agent.running_tasks(), 1);

  Release("t-once");
  std::optional<v1::TaskEvent> exited =
      WaitForEvent("t-once", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  agent.HandleCommand(start);  // After the exit: the final event again.
  events = sink_.Events("t-once");
  ASSERT_THAT(events, SizeIs(4));
  EXPECT_EQ(events[3].kind(), v1::TaskEvent::KIND_EXITED);
  EXPECT_EQ(events[3].exit_code(), 0);
  EXPECT_EQ(events[3].pid(), events[0].pid());
  EXPECT_EQ(agent.running_tasks(), 0);

  // Once acknowledged, a stale start is ignored: still no second process.
  agent.HandleCommand(AckCommand("t-once"));
  agent.HandleCommand(start);
  EXPECT_THAT(sink_.Events("t-once"), SizeIs(4));
  EXPECT_EQ(agent.running_tasks(), 0);
  EXPECT_EQ(CountLines(starts), 1);
}

TEST_F(AgentTest, MissingExecutableFailsTheStartAndReleasesTheGpus) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(StartBuilder("t-missing")
                          .Command("/no/such/binary", {"--flag"})
                          .Gpus({0, 1})
                          .Cap(150)
                          .Build());
  std::vector<v1::TaskEvent> events = sink_.Events("t-missing");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED);
  EXPECT_THAT(events[0].message(), HasSubstr("/no/such/binary"));
  EXPECT_EQ(events[0].exit_code(), 127);
  EXPECT_EQ(agent.running_tasks(), 0);
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), ElementsAre("t-missing"));

  clock_.Advance(absl::Seconds(10));
  v1::NodeSample sample = Telemetry();
  for (int32_t index : {0, 1}) {
    const v1::DeviceSample* gpu = FindGpu(sample, index);
    ASSERT_NE(gpu, nullptr);
    EXPECT_DOUBLE_EQ(gpu->power_cap_w(), kV100DefaultCapW) << index;
    EXPECT_DOUBLE_EQ(gpu->utilization(), 0) << index;
    EXPECT_DOUBLE_EQ(gpu->power_w(), kV100IdleW) << index;
    EXPECT_DOUBLE_EQ(gpu->energy_j(), kV100IdleW * 10) << index;
  }
  EXPECT_THAT(sample.tasks(), IsEmpty());
}

TEST_F(AgentTest, StartOnAnUnknownGpuFails) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(
      StartBuilder("t-gpu").Shell("exit 0").Gpus({0, 5}).Cap(150).Build());
  std::vector<v1::TaskEvent> events = sink_.Events("t-gpu");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED);
  EXPECT_EQ(events[0].message(), "no GPU with index 5");
  EXPECT_EQ(agent.running_tasks(), 0);
  const v1::NodeSample sample = Telemetry();
  const v1::DeviceSample* gpu = FindGpu(sample, 0);
  ASSERT_NE(gpu, nullptr);
  EXPECT_DOUBLE_EQ(gpu->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(gpu->utilization(), 0);
}

TEST_F(AgentTest, MalformedTaskIdIsRefusedWithoutTouchingTheFilesystem) {
  Agent& agent = MakeAgent(1);
  // "<work_dir>/tasks/../x" is <work_dir>/x: plant a log there.
  const std::string outside = work_dir_ + "/x";
  ASSERT_EQ(mkdir(outside.c_str(), 0755), 0);
  WriteFile(outside + "/stdout.log", "secret\n");

  agent.HandleCommand(
      StartBuilder("../x").Shell("echo pwned > pwned").Gpus({0}).Build());
  std::vector<v1::TaskEvent> events = sink_.Events("../x");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED);
  EXPECT_EQ(events[0].message(), "malformed task id");
  EXPECT_EQ(agent.running_tasks(), 0);
  EXPECT_FALSE(FileExists(outside + "/hints"));
  EXPECT_FALSE(FileExists(outside + "/pwned"));

  agent.HandleCommand(FetchLogsCommand("req-1", "../x", 1000));
  std::vector<v1::LogsReply> logs = sink_.Logs();
  ASSERT_THAT(logs, SizeIs(1));
  EXPECT_EQ(logs[0].request_id(), "req-1");
  EXPECT_EQ(logs[0].error(), "malformed task id");
  EXPECT_EQ(logs[0].stdout(), "");
  EXPECT_EQ(logs[0].stderr(), "");
}

// ---------------------------------------------------------------------------
// Power caps and hints.

TEST_F(AgentTest, StartCapHoldsWhileTheTaskRunsAndIsRestoredAtExit) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(
      StartBuilder("t-cap").Shell(kWaitForGo).Gpus({0}).Cap(150).Build());
  ASSERT_TRUE(sink_.FirstEvent("t-cap", v1::TaskEvent::KIND_STARTED));

  v1::NodeSample running = Telemetry();
  ASSERT_NE(FindGpu(running, 0), nullptr);
  ASSERT_NE(FindGpu(running, 1), nullptr);
  EXPECT_DOUBLE_EQ(FindGpu(running, 0)->power_cap_w(), 150);
  EXPECT_DOUBLE_EQ(FindGpu(running, 0)->power_w(), 150);  // Busy, capped.
  EXPECT_DOUBLE_EQ(FindGpu(running, 0)->utilization(), 1);
  EXPECT_DOUBLE_EQ(FindGpu(running, 1)->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(FindGpu(running, 1)->power_w(), kV100IdleW);

  Release("t-cap");
  ASSERT_TRUE(WaitForEvent("t-cap", v1::TaskEvent::KIND_EXITED).has_value());
  v1::NodeSample after = Telemetry();
  ASSERT_NE(FindGpu(after, 0), nullptr);
  EXPECT_DOUBLE_EQ(FindGpu(after, 0)->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(FindGpu(after, 0)->power_w(), kV100IdleW);
  EXPECT_DOUBLE_EQ(FindGpu(after, 0)->utilization(), 0);
}

TEST_F(AgentTest, OutOfRangeStartCapKeepsTheDefaultAndStillStarts) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(
      StartBuilder("t-400").Shell(kWaitForGo).Gpus({0}).Cap(400).Build());
  std::vector<v1::TaskEvent> events = sink_.Events("t-400");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_STARTED);
  EXPECT_EQ(agent.running_tasks(), 1);
  const v1::NodeSample sample = Telemetry();
  const v1::DeviceSample* gpu = FindGpu(sample, 0);
  ASSERT_NE(gpu, nullptr);
  EXPECT_DOUBLE_EQ(gpu->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(gpu->power_w(), kV100BusyW);
}

TEST_F(AgentTest, SetCapChangesTheLimitAndRewritesTheDeviceSpeedHint) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(StartBuilder("t-set").Shell(kWaitForGo).Gpus({0}).Build());
  const std::string hints_path = HintsPath("t-set");

  agent.HandleCommand(SetCapCommand(0, 200));
  std::map<std::string, std::string> at_200 = ReadKeyValues(hints_path);
  EXPECT_EQ(at_200["device_speed"], V100SpeedHint(200));
  EXPECT_EQ(at_200["batch_size"], "32");
  EXPECT_DOUBLE_EQ(FindGpu(Telemetry(), 0)->power_cap_w(), 200);

  agent.HandleCommand(SetCapCommand(0, 150));
  std::map<std::string, std::string> at_150 = ReadKeyValues(hints_path);
  EXPECT_EQ(at_150["device_speed"], V100SpeedHint(150));
  double speed_200 = 0, speed_150 = 0;
  ASSERT_TRUE(absl::SimpleAtod(at_200["device_speed"], &speed_200));
  ASSERT_TRUE(absl::SimpleAtod(at_150["device_speed"], &speed_150));
  EXPECT_LT(speed_150, speed_200);
  EXPECT_LT(speed_200, 1.0);
  v1::NodeSample sample = Telemetry();
  EXPECT_DOUBLE_EQ(FindGpu(sample, 0)->power_cap_w(), 150);
  EXPECT_DOUBLE_EQ(FindGpu(sample, 0)->power_w(), 150);

  // Refused caps and unknown GPUs change nothing.
  agent.HandleCommand(SetCapCommand(0, 50));
  agent.HandleCommand(SetCapCommand(9, 150));
  EXPECT_EQ(ReadKeyValues(hints_path)["device_speed"], V100SpeedHint(150));
  EXPECT_DOUBLE_EQ(FindGpu(Telemetry(), 0)->power_cap_w(), 150);

  // An idle GPU can be capped too.
  agent.HandleCommand(SetCapCommand(1, 120));
  EXPECT_DOUBLE_EQ(FindGpu(Telemetry(), 1)->power_cap_w(), 120);
  EXPECT_EQ(ReadKeyValues(hints_path)["device_speed"], V100SpeedHint(150));
}

// The hints file the task sees at start must carry the speed of its device
// running the task, at the cap it was started with.
TEST_F(AgentTest, InitialHintsCarryTheDeviceSpeedOfTheBusyDevice) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(
      StartBuilder("t-full").Shell(kWaitForGo).Gpus({0}).Build());
  agent.HandleCommand(
      StartBuilder("t-capped").Shell(kWaitForGo).Gpus({1}).Cap(150).Build());
  ASSERT_EQ(agent.running_tasks(), 2);
  EXPECT_EQ(ReadKeyValues(HintsPath("t-full"))["device_speed"],
            V100SpeedHint(kV100DefaultCapW));  // "1.0000"
  EXPECT_EQ(ReadKeyValues(HintsPath("t-capped"))["device_speed"],
            V100SpeedHint(150));
}

TEST_F(AgentTest, UpdateHintsRewritesBatchSizeShardsAndStop) {
  Agent& agent = MakeAgent(1);
  // No GPU: the file holds no device_speed line.
  agent.HandleCommand(StartBuilder("t-hints")
                          .Shell(kWaitForGo)
                          .Batch(32)
                          .Shards("0-7", 8)
                          .Build());
  const std::string hints_path = HintsPath("t-hints");
  EXPECT_EQ(ReadAll(hints_path), "batch_size=32\nshards=0-7\nstop=0\n");

  agent.HandleCommand(HintsCommand("t-hints", 64, "0-3", false));
  EXPECT_EQ(ReadAll(hints_path), "batch_size=64\nshards=0-3\nstop=0\n");

  // batch_size 0 keeps the current one.
  agent.HandleCommand(HintsCommand("t-hints", 0, "4-7", true));
  EXPECT_EQ(ReadAll(hints_path), "batch_size=64\nshards=4-7\nstop=1\n");
  EXPECT_FALSE(FileExists(hints_path + "~"));

  // Hints for a task that is not running are ignored.
  agent.HandleCommand(HintsCommand("no-such-task", 8, "0", true));
  EXPECT_FALSE(FileExists(TaskDir("no-such-task")));
}

// ---------------------------------------------------------------------------
// Stopping.

TEST_F(AgentTest, StopTaskTerminatesWithSigterm) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(
      StartBuilder("t-stop").Command("/bin/sleep", {"1000"}).Gpus({0}).Build());
  ASSERT_EQ(agent.running_tasks(), 1);
  agent.HandleCommand(StopCommand("t-stop", absl::Seconds(30)));
  std::optional<v1::TaskEvent> exited =
      WaitForEvent("t-stop", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_TRUE(exited->stopped());
  EXPECT_EQ(exited->exit_code(), 128 + SIGTERM);
  EXPECT_EQ(exited->signal(), SIGTERM);
  EXPECT_EQ(agent.running_tasks(), 0);
  // A stop for a task that has ended changes nothing.
  agent.HandleCommand(StopCommand("t-stop", absl::Seconds(30)));
  EXPECT_THAT(sink_.Events("t-stop"), SizeIs(2));
}

TEST_F(AgentTest, StopTaskEscalatesToSigkillAfterTheGracePeriod) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(StartBuilder("t-stubborn")
                          .Shell("trap '' TERM; touch ready; sleep 1000")
                          .Gpus({0})
                          .Build());
  // SIGTERM before the trap is set would kill it at once.
  ASSERT_TRUE(WaitForFile(TaskDir("t-stubborn") + "/ready"));
  agent.HandleCommand(StopCommand("t-stubborn", absl::Seconds(30)));

  // Before the grace period ends on the agent's clock, it keeps running.
  clock_.Advance(absl::Seconds(29));
  for (int i = 0; i < 20; ++i) {
    agent.Tick();
    absl::SleepFor(kPollInterval);
  }
  EXPECT_EQ(agent.running_tasks(), 1);
  EXPECT_FALSE(sink_.FirstEvent("t-stubborn", v1::TaskEvent::KIND_EXITED));

  clock_.Advance(absl::Seconds(1));
  std::optional<v1::TaskEvent> exited =
      WaitForEvent("t-stubborn", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_TRUE(exited->stopped());
  EXPECT_EQ(exited->exit_code(), 128 + SIGKILL);
  EXPECT_EQ(exited->signal(), SIGKILL);
}

// ---------------------------------------------------------------------------
// Energy attribution.

TEST_F(AgentTest, EnergyIsAttributedByGpuOwnershipAndStaticShare) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(StartBuilder("task-a").Shell(kWaitForGo).Gpus({0}).Build());
  agent.HandleCommand(StartBuilder("task-b").Shell(kWaitForGo).Gpus({1}).Build());
  ASSERT_EQ(agent.running_tasks(), 2);

  // 10 s with the CPU 50% busy: 60 W estimated, 600 J, of which 200 J idle.
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(500, 500);
  v1::NodeSample sample = Telemetry();

  EXPECT_EQ(FromProtoTime(sample.time()), clock_.Now());
  const double gpu_j = kV100BusyW * 10;                       // 2285 J
  // Static power, CPU idle power, and the CPU's dynamic energy that no task
  // used (the fixture has no per-process files, so no task has CPU time):
  // (1000 + 200 + 400) / 2 = 800 J each, so the tasks add up to the node.
  const double static_j =
      (kStaticPowerW * 10 + kCpuIdleW * 10 + (60 - kCpuIdleW) * 10) / 2;
  ASSERT_THAT(sample.tasks(), SizeIs(2));
  for (const std::string id : {"task-a", "task-b"}) {
    const v1::TaskUsage* usage = FindUsage(sample, id);
    ASSERT_NE(usage, nullptr) << id;
    EXPECT_DOUBLE_EQ(usage->energy().gpu_j(), gpu_j) << id;
    // The fixture procfs has no per-process files: no CPU-time share.
    EXPECT_DOUBLE_EQ(usage->energy().cpu_j(), 0) << id;
    EXPECT_DOUBLE_EQ(usage->energy().static_j(), static_j) << id;
    EXPECT_DOUBLE_EQ(usage->energy().total_j(), gpu_j + static_j) << id;
  }
  for (int32_t index : {0, 1}) {
    const v1::DeviceSample* gpu = FindGpu(sample, index);
    ASSERT_NE(gpu, nullptr);
    EXPECT_DOUBLE_EQ(gpu->energy_j(), gpu_j);
    EXPECT_DOUBLE_EQ(gpu->power_w(), kV100BusyW);
  }
  // Devices (two busy GPUs, the CPU at 60 W) plus static power.
  ASSERT_THAT(sample.devices(), SizeIs(3));
  const v1::DeviceSample& cpu = sample.devices(2);
  EXPECT_EQ(cpu.kind(), v1::DEVICE_KIND_CPU);
  EXPECT_EQ(cpu.source(), "estimated");
  EXPECT_DOUBLE_EQ(cpu.utilization(), 0.5);
  EXPECT_DOUBLE_EQ(cpu.power_w(), 60);
  EXPECT_DOUBLE_EQ(sample.node_power_w(), 2 * kV100BusyW + 60 + kStaticPowerW);

  // The next interval adds to the totals.
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);
  v1::NodeSample next = Telemetry();
  const v1::TaskUsage* a = FindUsage(next, "task-a");
  ASSERT_NE(a, nullptr);
  EXPECT_DOUBLE_EQ(a->energy().gpu_j(), 2 * gpu_j);
  // An idle CPU this time: static power and CPU idle power only.
  const double idle_static_j = (kStaticPowerW * 10 + kCpuIdleW * 10) / 2;
  EXPECT_DOUBLE_EQ(a->energy().static_j(), static_j + idle_static_j);
  EXPECT_DOUBLE_EQ(a->energy().total_j(), 2 * gpu_j + static_j + idle_static_j);
  EXPECT_DOUBLE_EQ(next.node_power_w(),
                   2 * kV100BusyW + kCpuIdleW + kStaticPowerW);
}

TEST_F(AgentTest, UnownedGpuEnergyGoesToTheStaticPool) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(StartBuilder("task-b").Shell(kWaitForGo).Gpus({1}).Build());
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);  // Idle CPU: 20 W.
  v1::NodeSample sample = Telemetry();

  const v1::TaskUsage* usage = FindUsage(sample, "task-b");
  ASSERT_NE(usage, nullptr);
  const double static_j =
      kStaticPowerW * 10 + kCpuIdleW * 10 + kV100IdleW * 10;  // 1550 J
  EXPECT_DOUBLE_EQ(usage->energy().gpu_j(), kV100BusyW * 10);
  EXPECT_DOUBLE_EQ(usage->energy().cpu_j(), 0);
  EXPECT_DOUBLE_EQ(usage->energy().static_j(), static_j);
  EXPECT_DOUBLE_EQ(usage->energy().total_j(), kV100BusyW * 10 + static_j);
  EXPECT_DOUBLE_EQ(sample.node_power_w(),
                   kV100BusyW + kV100IdleW + kCpuIdleW + kStaticPowerW);
}

// A start on a GPU a pod took since the scheduler last looked is refused as
// the node's state (node_busy), so the scheduler places the job again; the
// pod's GPU is left as it was.
TEST_F(AgentTest, StartOnAPodHeldGpuIsRefusedAsNodeBusy) {
  Agent& agent = MakeAgent(2);
  v1::KubernetesContainer holder;
  holder.set_namespace_("team-a");
  holder.set_pod("infer-0");
  holder.set_container("server");
  agent.SetGpuHolders({{1, holder}});
  agent.HandleCommand(StartBuilder("t-held").Shell("exit 0").Gpus({1}).Cap(150).Build());
  std::vector<v1::TaskEvent> events = sink_.Events("t-held");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED);
  EXPECT_TRUE(events[0].node_busy());
  EXPECT_EQ(events[0].message(), "GPU 1 is held by Kubernetes pod team-a/infer-0");
  EXPECT_EQ(agent.running_tasks(), 0);
  const v1::DeviceSample* gpu = FindGpu(Telemetry(), 1);
  ASSERT_NE(gpu, nullptr);
  EXPECT_DOUBLE_EQ(gpu->power_cap_w(), kV100DefaultCapW);
  // Other failures are the task's: not node_busy.
  agent.HandleCommand(StartBuilder("t-bad").Command("/no/such/binary", {}).Gpus({0}).Build());
  events = sink_.Events("t-bad");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_FALSE(events[0].node_busy());
}

// A GPU a Kubernetes pod holds outside Joule: its energy is the pod's, not
// the static pool the tasks share, and telemetry says who holds it.
TEST_F(AgentTest, PodHeldGpuIsMarkedAndKeptOutOfTheStaticPool) {
  Agent& agent = MakeAgent(2);
  v1::KubernetesContainer holder;
  holder.set_namespace_("team-a");
  holder.set_pod("infer-0");
  holder.set_container("server");
  agent.SetGpuHolders({{0, holder}});
  agent.HandleCommand(StartBuilder("task-b").Shell(kWaitForGo).Gpus({1}).Build());
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);  // Idle CPU: 20 W.
  v1::NodeSample sample = Telemetry();

  const v1::TaskUsage* usage = FindUsage(sample, "task-b");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->energy().static_j(), kStaticPowerW * 10 + kCpuIdleW * 10);
  const v1::DeviceSample* held = FindGpu(sample, 0);
  ASSERT_NE(held, nullptr);
  ASSERT_TRUE(held->has_held_by());
  EXPECT_EQ(held->held_by().namespace_(), "team-a");
  EXPECT_EQ(held->held_by().pod(), "infer-0");
  EXPECT_EQ(held->held_by().container(), "server");
  EXPECT_DOUBLE_EQ(held->energy_j(), kV100IdleW * 10);
  const v1::DeviceSample* own = FindGpu(sample, 1);
  ASSERT_NE(own, nullptr);
  EXPECT_FALSE(own->has_held_by());
  // The pod let go: GPU 0's energy is back in the pool.
  agent.SetGpuHolders({});
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);
  v1::NodeSample next = Telemetry();
  usage = FindUsage(next, "task-b");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->energy().static_j(),
                   2 * (kStaticPowerW * 10 + kCpuIdleW * 10) + kV100IdleW * 10);
  held = FindGpu(next, 0);
  ASSERT_NE(held, nullptr);
  EXPECT_FALSE(held->has_held_by());
  Release("task-b");
}

TEST_F(AgentTest, ExitEventCarriesEnergyUpToTheExit) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(StartBuilder("t-done").Shell(kWaitForGo).Gpus({0}).Build());
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);
  Release("t-done");
  std::optional<v1::TaskEvent> exited =
      WaitForEvent("t-done", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  const v1::Energy& energy = exited->usage().energy();
  EXPECT_DOUBLE_EQ(energy.gpu_j(), kV100BusyW * 10);
  EXPECT_DOUBLE_EQ(energy.cpu_j(), 0);
  EXPECT_DOUBLE_EQ(energy.static_j(), kStaticPowerW * 10 + kCpuIdleW * 10);
  EXPECT_DOUBLE_EQ(energy.total_j(),
                   kV100BusyW * 10 + kStaticPowerW * 10 + kCpuIdleW * 10);

  // The books were closed at the exit: later intervals go to no one, and
  // the GPU is idle again.
  clock_.Advance(absl::Seconds(10));
  v1::NodeSample sample = Telemetry();
  EXPECT_THAT(sample.tasks(), IsEmpty());
  EXPECT_DOUBLE_EQ(FindGpu(sample, 0)->energy_j(),
                   kV100BusyW * 10 + kV100IdleW * 10);
}

TEST_F(AgentTest, CpuDynamicEnergyFollowsTheTasksCpuTime) {
  // Task CPU time from the real /proc (and wait4 at exit); host busy time
  // from the fixture: 1 s busy, 1 s idle, so 50% utilization and 400 J of
  // dynamic CPU energy over 10 s.
  Agent& agent = MakeAgent(1, "/proc");
  const std::string id = UniqueTaskId("t-cpu");
  agent.HandleCommand(StartBuilder(id)
                          .Shell(absl::StrCat(
                              kWaitForGo,
                              "; i=0; while [ $i -lt 20000 ]; do "
                              "i=$((i+1)); done"))
                          .Gpus({0})
                          .Build());
  clock_.Advance(absl::Seconds(10));
  const uint64_t ticks_per_second = sysconf(_SC_CLK_TCK);
  cpu_stat_->AddTicks(ticks_per_second, ticks_per_second);
  Release(id);
  std::optional<v1::TaskEvent> exited = WaitForEvent(id, v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  const v1::Energy& energy = exited->usage().energy();
  const double dynamic_j = (60 - kCpuIdleW) * 10;  // 400 J
  EXPECT_GT(energy.cpu_j(), 0);
  EXPECT_LE(energy.cpu_j(), dynamic_j);
  EXPECT_DOUBLE_EQ(energy.gpu_j(), kV100BusyW * 10);
  // The only task gets all of the CPU's energy: its share as cpu_j, the
  // rest (time other processes used, and idle power) as static_j.
  EXPECT_NEAR(energy.cpu_j() + energy.static_j(),
              kStaticPowerW * 10 + kCpuIdleW * 10 + dynamic_j, 1e-6);
  EXPECT_NEAR(energy.total_j(),
              energy.gpu_j() + energy.cpu_j() + energy.static_j(), 1e-9);
}

// A task started in the middle of an accounting interval owned neither its
// GPU nor a share of the static pool before it started.
TEST_F(AgentTest, TaskStartedMidIntervalIsChargedOnlyFromItsStart) {
  Agent& agent = MakeAgent(1);
  clock_.Advance(absl::Seconds(10));  // An idle node.
  cpu_stat_->AddTicks(0, 1000);
  agent.HandleCommand(StartBuilder("t-late").Shell(kWaitForGo).Gpus({0}).Build());
  clock_.Advance(absl::Seconds(10));  // The task runs.
  cpu_stat_->AddTicks(0, 1000);
  v1::NodeSample sample = Telemetry();
  const v1::TaskUsage* usage = FindUsage(sample, "t-late");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->energy().gpu_j(), kV100BusyW * 10);
  EXPECT_DOUBLE_EQ(usage->energy().static_j(),
                   kStaticPowerW * 10 + kCpuIdleW * 10);
}

// ---------------------------------------------------------------------------
// Progress, registration and logs.

TEST_F(AgentTest, ProgressLinesShowUpInTelemetry) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(
      StartBuilder("t-prog")
          .Shell(absl::StrCat(
              "p=\"$JOULE_PROGRESS_FILE\"; "
              "echo 'progress samples=100 steps=3' >> \"$p\"; "
              "echo 'garbage line' >> \"$p\"; "
              "echo 'progressive samples=999 steps=999' >> \"$p\"; "
              "echo 'progress samples=abc steps=nan' >> \"$p\"; "
              "echo 'progress steps=inf samples' >> \"$p\"; "
              "touch written; ",
              kWaitForGo))
          .Gpus({0})
          .Build());
  ASSERT_TRUE(WaitForFile(TaskDir("t-prog") + "/written"));
  v1::NodeSample sample = Telemetry();
  const v1::TaskUsage* usage = FindUsage(sample, "t-prog");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->samples_done(), 100);
  EXPECT_DOUBLE_EQ(usage->steps_done(), 3);

  // A line counts only once it is complete.
  const std::string progress = TaskDir("t-prog") + "/progress";
  AppendFile(progress, "progress samples=200");
  sample = Telemetry();
  usage = FindUsage(sample, "t-prog");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->samples_done(), 100);
  AppendFile(progress, " steps=5\n");
  sample = Telemetry();
  usage = FindUsage(sample, "t-prog");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->samples_done(), 200);
  EXPECT_DOUBLE_EQ(usage->steps_done(), 5);

  // Progress written just before the exit is in the exit event.
  AppendFile(progress, "progress samples=300 steps=7\n");
  Release("t-prog");
  std::optional<v1::TaskEvent> exited =
      WaitForEvent("t-prog", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_DOUBLE_EQ(exited->usage().samples_done(), 300);
  EXPECT_DOUBLE_EQ(exited->usage().steps_done(), 7);
}

TEST_F(AgentTest, RegisterListsRunningTasks) {
  Agent& agent = MakeAgent(2);
  const absl::Time start = clock_.Now();
  agent.HandleCommand(
      StartBuilder("task-a").Job("job-a").Shell(kWaitForGo).Gpus({0}).Build());
  agent.HandleCommand(
      StartBuilder("task-b").Job("job-b").Shell(kWaitForGo).Gpus({1}).Build());
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(0, 1000);
  agent.SendTelemetry();

  v1::Register reg = agent.MakeRegister();
  EXPECT_EQ(reg.node().name(), "node-a");
  EXPECT_EQ(reg.node().labels().at("zone"), "test");
  EXPECT_DOUBLE_EQ(reg.node().cpus(), 8);
  EXPECT_DOUBLE_EQ(reg.node().static_power_w(), kStaticPowerW);
  ASSERT_THAT(reg.node().devices(), SizeIs(3));
  EXPECT_EQ(reg.node().devices(0).model(), "V100");
  EXPECT_DOUBLE_EQ(reg.node().devices(0).power_limit_default_w(),
                   kV100DefaultCapW);
  EXPECT_EQ(reg.node().devices(2).kind(), v1::DEVICE_KIND_CPU);

  ASSERT_THAT(reg.running_tasks(), SizeIs(2));
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"task-a", "job-a"}, {"task-b", "job-b"}};
  for (int i = 0; i < 2; ++i) {
    const v1::RunningTask& running = reg.running_tasks(i);
    EXPECT_EQ(running.task_id(), expected[i].first);
    EXPECT_EQ(running.job_id(), expected[i].second);
    EXPECT_EQ(running.pid(),
              sink_.FirstEvent(expected[i].first, v1::TaskEvent::KIND_STARTED)
                  ->pid());
    EXPECT_EQ(FromProtoTime(running.start_time()), start);
    EXPECT_EQ(running.usage().task_id(), expected[i].first);
    EXPECT_DOUBLE_EQ(running.usage().energy().gpu_j(), kV100BusyW * 10);
  }
  EXPECT_THAT(reg.unacked_events(), IsEmpty());

  Release("task-a");
  ASSERT_TRUE(WaitForEvent("task-a", v1::TaskEvent::KIND_EXITED).has_value());
  reg = agent.MakeRegister();
  ASSERT_THAT(reg.running_tasks(), SizeIs(1));
  EXPECT_EQ(reg.running_tasks(0).task_id(), "task-b");
  EXPECT_THAT(UnackedIds(reg), ElementsAre("task-a"));
}

TEST_F(AgentTest, FetchLogsReturnsTheTailOfAFinishedTasksLogs) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(StartBuilder("t-logs")
                          .Shell("echo out-line; echo err-line >&2; exit 0")
                          .Build());
  ASSERT_TRUE(WaitForEvent("t-logs", v1::TaskEvent::KIND_EXITED).has_value());

  agent.HandleCommand(FetchLogsCommand("req-all", "t-logs", 1000));
  agent.HandleCommand(FetchLogsCommand("req-tail", "t-logs", 4));
  std::vector<v1::LogsReply> logs = sink_.Logs();
  ASSERT_THAT(logs, SizeIs(2));
  EXPECT_EQ(logs[0].request_id(), "req-all");
  EXPECT_EQ(logs[0].task_id(), "t-logs");
  EXPECT_EQ(logs[0].stdout(), "out-line\n");
  EXPECT_EQ(logs[0].stderr(), "err-line\n");
  EXPECT_FALSE(logs[0].truncated());
  EXPECT_EQ(logs[0].error(), "");
  EXPECT_EQ(logs[1].request_id(), "req-tail");
  EXPECT_EQ(logs[1].stdout(), "ine\n");
  EXPECT_EQ(logs[1].stderr(), "ine\n");
  EXPECT_TRUE(logs[1].truncated());
  EXPECT_EQ(logs[1].error(), "");
}

TEST_F(AgentTest, FetchLogsForAnUnknownTaskIsAnError) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(FetchLogsCommand("req-1", "never-started", 1000));
  std::vector<v1::LogsReply> logs = sink_.Logs();
  ASSERT_THAT(logs, SizeIs(1));
  EXPECT_EQ(logs[0].request_id(), "req-1");
  EXPECT_EQ(logs[0].task_id(), "never-started");
  EXPECT_NE(logs[0].error(), "");
  EXPECT_EQ(logs[0].stdout(), "");
  EXPECT_EQ(logs[0].stderr(), "");
}

// ---------------------------------------------------------------------------
// Restart and shutdown.

// Spawns what a previous agent left running of a task: a shell with a
// `setsid` child, both carrying the task's mark (JOULE_TASK_DIR=`task_dir`).
absl::StatusOr<std::unique_ptr<TaskProcess>> SpawnLeftover(const std::string& task_dir,
                                                           const std::string& cgroup = "") {
  SpawnOptions options;
  options.path = "/bin/sh";
  options.args = {"-c", "setsid sleep 1000 & exec sleep 1000"};
  options.env = {{"PATH", "/usr/bin:/bin"}, {"JOULE_TASK_ID", "left"}};
  if (!task_dir.empty()) options.env.emplace_back("JOULE_TASK_DIR", task_dir);
  options.cgroup_dir = cgroup;
  return TaskProcess::Spawn(options);
}

TEST_F(AgentTest, KillLeftoverTasksKillsEveryProcessOfTheWorkDirsTasksOnly) {
  const std::string left = UniqueTaskId("left");
  absl::StatusOr<std::unique_ptr<TaskProcess>> leftover = SpawnLeftover(TaskDir(left));
  ASSERT_TRUE(leftover.ok()) << leftover.status();
  // The task of the same id of another agent on this machine (another work
  // directory: another cluster, or another test).
  const std::string elsewhere = absl::StrCat(MakeTempDir(), "/tasks/", left);
  absl::StatusOr<std::unique_ptr<TaskProcess>> other = SpawnLeftover(elsewhere);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(PollUntil([&] { return LiveTaskProcesses(TaskDir(left)).size() == 2; }));
  ASSERT_TRUE(PollUntil([&] { return LiveTaskProcesses(elsewhere).size() == 2; }));
  for (const std::string& dir :
       std::vector<std::string>{"tasks", "tasks/" + left, "tasks/ended", "hints"}) {
    ASSERT_EQ(mkdir(absl::StrCat(work_dir_, "/", dir).c_str(), 0755), 0) << dir;
  }
  WriteFile(HintsPath(left), "stop=0\n");

  Agent& agent = MakeAgent(1, "/proc");
  EXPECT_EQ(agent.KillLeftoverTasks(), 1);
  std::optional<ExitStatus> status;
  ASSERT_TRUE(PollUntil([&] { return (status = (*leftover)->Poll()).has_value(); }));
  EXPECT_EQ(status->signal, SIGKILL);
  // Its `setsid` child too.
  EXPECT_TRUE(PollUntil([&] { return LiveTaskProcesses(TaskDir(left)).empty(); }));
  EXPECT_FALSE(FileExists(HintsPath(left)));

  EXPECT_FALSE((*other)->Poll().has_value());
  EXPECT_THAT(LiveTaskProcesses(elsewhere), SizeIs(2));
  ASSERT_TRUE(TaskReaper().Kill(elsewhere, SIGKILL).ok());
  ASSERT_TRUE(PollUntil([&] { return (*other)->Poll().has_value(); }));
  // Nothing is left to kill a second time.
  EXPECT_EQ(agent.KillLeftoverTasks(), 0);
}

TEST_F(AgentTest, ShutdownStopsEveryTaskAndRestoresDefaultCaps) {
  Agent& agent = MakeAgent(3);
  agent.HandleCommand(StartBuilder("task-a")
                          .Command("/bin/sleep", {"1000"})
                          .Gpus({0})
                          .Cap(150)
                          .Build());
  agent.HandleCommand(StartBuilder("task-b")
                          .Command("/bin/sleep", {"1000"})
                          .Gpus({1})
                          .Cap(180)
                          .Build());
  agent.HandleCommand(SetCapCommand(2, 120));  // A node-level cap, no task.
  ASSERT_EQ(agent.running_tasks(), 2);

  agent.StopAllTasks(absl::Seconds(30));
  ASSERT_TRUE(PollUntil([&] {
    agent.Tick();
    return agent.running_tasks() == 0;
  }));
  for (const std::string id : {"task-a", "task-b"}) {
    std::optional<v1::TaskEvent> exited =
        sink_.FirstEvent(id, v1::TaskEvent::KIND_EXITED);
    ASSERT_TRUE(exited.has_value()) << id;
    EXPECT_TRUE(exited->stopped()) << id;
    EXPECT_EQ(exited->exit_code(), 128 + SIGTERM) << id;
  }
  EXPECT_THAT(UnackedIds(agent.MakeRegister()), ElementsAre("task-a", "task-b"));
  // The tasks' GPUs got their default caps back at exit; the node-level cap
  // waits for RestoreDefaultCaps.
  v1::NodeSample stopped = Telemetry();
  EXPECT_DOUBLE_EQ(FindGpu(stopped, 0)->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(FindGpu(stopped, 1)->power_cap_w(), kV100DefaultCapW);
  EXPECT_DOUBLE_EQ(FindGpu(stopped, 2)->power_cap_w(), 120);

  agent.RestoreDefaultCaps();
  v1::NodeSample sample = Telemetry();
  for (int32_t index : {0, 1, 2}) {
    const v1::DeviceSample* gpu = FindGpu(sample, index);
    ASSERT_NE(gpu, nullptr);
    EXPECT_DOUBLE_EQ(gpu->power_cap_w(), kV100DefaultCapW) << index;
    EXPECT_DOUBLE_EQ(gpu->utilization(), 0) << index;
  }
}


// ---------------------------------------------------------------------------
// Caps restored: journal, task end, agent stop, successor after a crash.

// A CPU setting backed by a plain variable, standing in for a sysfs file.
struct FakeSetting {
  double value;
  CpuSetting Setting() {
    return {[this]() -> absl::StatusOr<double> { return value; },
            [this](double v) {
              value = v;
              return absl::OkStatus();
            }};
  }
};

TEST_F(AgentTest, GpuCapIsJournaledAndForgottenWhenRestored) {
  absl::StatusOr<CapJournal> journal = CapJournal::Open(work_dir_ + "/caps.journal");
  ASSERT_TRUE(journal.ok());
  Agent& agent = MakeAgent(1, "", &*journal);
  agent.HandleCommand(
      StartBuilder("t-cap").Shell(kWaitForGo).Gpus({0}).Cap(150).Build());
  // While the task runs the original (the default) is on disk.
  absl::StatusOr<CapJournal> on_disk = CapJournal::Open(work_dir_ + "/caps.journal");
  ASSERT_TRUE(on_disk.ok());
  ASSERT_EQ(on_disk->entries().size(), 1u);
  EXPECT_EQ(on_disk->entries().begin()->second, 250);
  Release("t-cap");
  ASSERT_TRUE(WaitForEvent("t-cap", v1::TaskEvent::KIND_EXITED).has_value());
  on_disk = CapJournal::Open(work_dir_ + "/caps.journal");
  ASSERT_TRUE(on_disk.ok());
  EXPECT_TRUE(on_disk->entries().empty());
}

TEST_F(AgentTest, SuccessorResetsCapsACrashedAgentLeftBehind) {
  // The "crashed" agent's GPU is left at 150 W with the journal saying 250.
  absl::StatusOr<CapJournal> journal = CapJournal::Open(work_dir_ + "/caps.journal");
  ASSERT_TRUE(journal.ok());
  auto gpu = std::make_unique<SimulatedGpu>(0, *FindGpuModel("V100"), "node-a",
                                            clock_.Now());
  ASSERT_TRUE(gpu->SetPowerLimit(150, clock_.Now()).ok());
  GpuDevice* raw = gpu.get();
  ASSERT_TRUE(journal->Record("gpu/GPU-sim-node-a-0/power_limit_w", 250).ok());
  ASSERT_TRUE(journal->Record("cpu/package0/power_limit_uw", 95e6).ok());
  ASSERT_TRUE(journal->Record("gpu/GPU-gone/power_limit_w", 300).ok());
  FakeSetting package{65e6};
  std::vector<std::unique_ptr<GpuDevice>> devices;
  devices.push_back(std::move(gpu));
  Agent& agent = MakeAgent(0, "", &*journal, std::move(devices));
  agent.SetCpuSettings({{"cpu/package0/power_limit_uw", package.Setting()}});

  EXPECT_EQ(agent.RestoreLeftoverCaps(), 2);
  EXPECT_EQ(raw->power_limit_w(), 250);
  EXPECT_EQ(package.value, 95e6);
  EXPECT_TRUE(journal->entries().empty());
}

TEST_F(AgentTest, CpuCapsAreJournaledAndRestoredWhenTheLastTaskEnds) {
  absl::StatusOr<CapJournal> journal = CapJournal::Open(work_dir_ + "/caps.journal");
  ASSERT_TRUE(journal.ok());
  Agent& agent = MakeAgent(1, "", &*journal);
  FakeSetting package{95e6}, policy0{3'600'000}, policy1{3'600'000};
  agent.SetCpuSettings({{"cpu/package0/power_limit_uw", package.Setting()},
                        {"cpu/policy0/max_freq_khz", policy0.Setting()},
                        {"cpu/policy1/max_freq_khz", policy1.Setting()}});
  agent.HandleCommand(StartBuilder("t-cpu").Shell(kWaitForGo).Build());
  v1::SchedulerCommand command;
  command.mutable_set_cap()->set_kind(v1::DEVICE_KIND_CPU);
  command.mutable_set_cap()->set_index(0);
  command.mutable_set_cap()->set_power_cap_w(60);
  command.mutable_set_cap()->set_max_frequency_mhz(2000);
  agent.HandleCommand(command);
  EXPECT_EQ(package.value, 60e6);
  EXPECT_EQ(policy0.value, 2'000'000);
  EXPECT_EQ(policy1.value, 2'000'000);
  EXPECT_EQ(journal->entries().size(), 3u);
  // A package that does not exist changes nothing.
  command.mutable_set_cap()->set_index(7);
  command.mutable_set_cap()->set_max_frequency_mhz(0);
  agent.HandleCommand(command);
  EXPECT_EQ(journal->entries().size(), 3u);

  Release("t-cpu");
  ASSERT_TRUE(WaitForEvent("t-cpu", v1::TaskEvent::KIND_EXITED).has_value());
  EXPECT_EQ(package.value, 95e6);
  EXPECT_EQ(policy0.value, 3'600'000);
  EXPECT_EQ(policy1.value, 3'600'000);
  EXPECT_TRUE(journal->entries().empty());
}


// Two tasks with known CPU times (fixture /proc/<pid>/stat files for their
// process groups) and a known CPU energy get the documented shares, and
// together account for every joule the node used.
TEST_F(AgentTest, TwoTasksGetTheDocumentedSharesSummingToTheNodeTotal) {
  Agent& agent = MakeAgent(0);
  agent.HandleCommand(StartBuilder("t-a").Shell(kWaitForGo).Build());
  agent.HandleCommand(StartBuilder("t-b").Shell(kWaitForGo).Build());
  const int64_t pid_a = sink_.FirstEvent("t-a", v1::TaskEvent::KIND_STARTED)->pid();
  const int64_t pid_b = sink_.FirstEvent("t-b", v1::TaskEvent::KIND_STARTED)->pid();
  const int64_t tck = sysconf(_SC_CLK_TCK);
  // utime 3 s for A, 1 s (utime + stime) for B; field 5 is the process group.
  auto stat = [&](int64_t pid, int64_t utime, int64_t stime) {
    WriteFile(absl::StrCat(cpu_stat_->root(), "/", pid, "/stat"),
              absl::StrFormat("%d (sh) S 1 %d %d 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 0 0\n",
                              pid, pid, pid, utime, stime));
  };
  ASSERT_EQ(mkdir(absl::StrCat(cpu_stat_->root(), "/", pid_a).c_str(), 0755), 0);
  ASSERT_EQ(mkdir(absl::StrCat(cpu_stat_->root(), "/", pid_b).c_str(), 0755), 0);
  stat(pid_a, 3 * tck, 0);
  stat(pid_b, tck / 2, tck / 2);

  // 10 s, the host busy 8 CPU-seconds of 16: 50% -> 60 W, 600 J, 200 J idle.
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(8 * tck, 8 * tck);
  v1::NodeSample sample = Telemetry();

  const double cpu_j = (kCpuIdleW + (kCpuTdpW - kCpuIdleW) * 0.5) * 10;  // 600 J
  const double idle_j = kCpuIdleW * 10;                                 // 200 J
  const double dynamic_j = cpu_j - idle_j;                              // 400 J
  const double node_j = kStaticPowerW * 10 + cpu_j;                     // 1600 J
  // Shares of the host's busy time: 3/8 and 1/8; the other 4/8 (processes
  // that are not tasks) joins the static pool with idle and static power.
  const double pool_j = kStaticPowerW * 10 + idle_j + dynamic_j * 4 / 8;
  const v1::TaskUsage* a = FindUsage(sample, "t-a");
  const v1::TaskUsage* b = FindUsage(sample, "t-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_DOUBLE_EQ(a->energy().cpu_j(), dynamic_j * 3 / 8);  // 150 J
  EXPECT_DOUBLE_EQ(b->energy().cpu_j(), dynamic_j * 1 / 8);  // 50 J
  EXPECT_DOUBLE_EQ(a->energy().static_j(), pool_j / 2);      // 700 J
  EXPECT_DOUBLE_EQ(b->energy().static_j(), pool_j / 2);
  EXPECT_DOUBLE_EQ(a->energy().gpu_j() + b->energy().gpu_j(), 0);
  EXPECT_DOUBLE_EQ(a->energy().total_j() + b->energy().total_j(), node_j);
  Release("t-a");
  Release("t-b");
}


// With a delegated cgroup root, each task gets its own cgroup and its CPU
// time is the cgroup's usage_usec (a fixture tree stands in for cgroupfs).
TEST_F(AgentTest, TaskCgroupCpuTimeDrivesTheShare) {
  const std::string cgroups = work_dir_ + "-cgroups";
  ASSERT_EQ(mkdir(cgroups.c_str(), 0755), 0);
  std::vector<std::unique_ptr<GpuDevice>> none;
  AgentOptions options;
  options.node_name = "node-a";
  options.work_dir = work_dir_;
  options.procfs_root = cpu_stat_->root();
  options.static_power_w = 0;
  options.task_cgroup_root = cgroups;
  options.task_users = task_users_;
  options.allow_root_tasks = true;
  // cgroup.procs must exist for the agent to write it, as in cgroupfs.
  ASSERT_EQ(mkdir((cgroups + "/t-cg").c_str(), 0755), 0);
  WriteFile(cgroups + "/t-cg/cgroup.procs", "");
  agent_ = std::make_unique<Agent>(
      std::move(options), std::move(none),
      std::make_unique<EstimatedCpu>(cpu_stat_->root(), kCpuTdpW, kCpuIdleW), &clock_);
  agent_->SetSink(&sink_);
  agent_->HandleCommand(StartBuilder("t-cg").Shell(kWaitForGo).Build());
  const int64_t pid = sink_.FirstEvent("t-cg", v1::TaskEvent::KIND_STARTED)->pid();
  EXPECT_EQ(ReadAll(cgroups + "/t-cg/cgroup.procs"), absl::StrCat(pid));
  const int64_t tck = sysconf(_SC_CLK_TCK);
  // 2 of the host's 8 busy seconds were the cgroup's.
  WriteFile(cgroups + "/t-cg/cpu.stat", "usage_usec 2000000\nuser_usec 1500000\n");
  clock_.Advance(absl::Seconds(10));
  cpu_stat_->AddTicks(8 * tck, 8 * tck);
  v1::NodeSample sample = Telemetry();
  const double dynamic_j = (kCpuTdpW - kCpuIdleW) * 0.5 * 10;
  const v1::TaskUsage* usage = FindUsage(sample, "t-cg");
  ASSERT_NE(usage, nullptr);
  EXPECT_DOUBLE_EQ(usage->energy().cpu_j(), dynamic_j * 2 / 8);
  bool cgroup_ok = false;
  for (const v1::SourceStatus& source : sample.sources()) {
    cgroup_ok |= source.name() == "cgroup" && source.state() == v1::SourceStatus::STATE_OK;
  }
  EXPECT_TRUE(cgroup_ok);
  Release("t-cg");
}

// ---------------------------------------------------------------------------
// Tasks run as their owner, isolated (issue 12, item 4). Real processes, run
// as unprivileged uids from the map that need no passwd entry; the work
// directory is one every uid can traverse into.

// For failure messages: each process's stat line and cgroup.
std::string DescribeProcesses(const std::vector<pid_t>& pids) {
  std::string out = absl::StrCat(pids.size(), " processes left:");
  for (pid_t pid : pids) {
    absl::StrAppend(&out, "\n  ", ReadAll(absl::StrCat("/proc/", pid, "/stat")), "  cgroup ",
                    ReadAll(absl::StrCat("/proc/", pid, "/cgroup")));
  }
  return out;
}

class AgentIsolationTest : public AgentTest {
 protected:
  void SetUp() override {
    work_dir_ = MakeTraversableTempDir("agent_isolation");
    cpu_stat_ = std::make_unique<ProcStatFixture>(work_dir_ + "/procfs");
    task_users_ = *ParseTaskUsers(
        "alice 60001 60001 60100,60101\n"
        "bob   60002 60002\n"
        "root-user 0 0\n"
        "daemon-user 500 500\n",
        "test map");
    allow_root_tasks_ = false;
  }
  void TearDown() override {
    AgentTest::TearDown();
    agent_.reset();
    if (!cgroup_.empty()) RemoveTestCgroup(cgroup_);
    RemoveTree(work_dir_);
  }

  // Uses a fresh cgroup v2 subtree for tasks; false (and the test skips)
  // where the sandbox has none that is writable.
  bool UseTestCgroup() {
    std::string why_not;
    std::optional<std::string> cgroup = MakeTestCgroup(&why_not);
    if (!cgroup.has_value()) {
      std::cout << "skipping: no writable cgroup v2 here: " << why_not << "\n";
      return false;
    }
    cgroup_ = task_cgroup_root_ = *cgroup;
    return true;
  }

  // Ends the task by `cancel` (a stop; the main process ignores SIGTERM, so
  // it takes the grace period and SIGKILL) or by letting it exit, and
  // expects nothing of it to be left.
  void ExpectNothingLeftAfter(bool cancel) {
    const std::string id = UniqueTaskId(cancel ? "t-cancel" : "t-exit");
    // A `setsid` child, and a daemon (fork, setsid, fork): both out of the
    // task's process group, each saying so once it is.
    agent_->HandleCommand(
        StartBuilder(id)
            .User("alice")
            .Shell(absl::StrCat(
                "trap '' TERM; setsid sh -c 'touch child-ready; exec sleep 1000' & "
                "(setsid sh -c 'sleep 1000 & touch daemon-ready' &); ",
                kWaitForGo))
            .Build());
    ASSERT_TRUE(sink_.FirstEvent(id, v1::TaskEvent::KIND_STARTED).has_value())
        << sink_.Events(id).back().message();
    ASSERT_TRUE(WaitForFile(TaskDir(id) + "/child-ready"));
    ASSERT_TRUE(WaitForFile(TaskDir(id) + "/daemon-ready"));
    // The main shell and the two escapees.
    ASSERT_GE(LiveTaskProcesses(TaskDir(id)).size(), 3u);
    if (!task_cgroup_root_.empty()) {
      ASSERT_TRUE(FileExists(absl::StrCat(task_cgroup_root_, "/", id)));
    }
    if (cancel) {
      agent_->HandleCommand(StopCommand(id, absl::Seconds(30)));
      clock_.Advance(absl::Seconds(30));
    } else {
      Release(id);
    }
    std::optional<v1::TaskEvent> exited = WaitForEvent(id, v1::TaskEvent::KIND_EXITED);
    ASSERT_TRUE(exited.has_value());
    EXPECT_EQ(exited->stopped(), cancel);
    EXPECT_TRUE(PollUntil([&] { return LiveTaskProcesses(TaskDir(id)).empty(); }))
        << DescribeProcesses(LiveTaskProcesses(TaskDir(id)));
    if (!task_cgroup_root_.empty()) {
      // The emptied cgroup goes too.
      EXPECT_TRUE(PollUntil([&] {
        agent_->Tick();
        return !FileExists(absl::StrCat(task_cgroup_root_, "/", id));
      }));
    }
  }

  std::string cgroup_;
};

TEST_F(AgentIsolationTest, TaskRunsAsItsUserWithItsGroupsAndNoNewPrivs) {
  Agent& agent = MakeAgent(1);
  agent.HandleCommand(StartBuilder("t-alice")
                          .User("alice")
                          .Shell(absl::StrCat("echo out; ", kWaitForGo))
                          .Gpus({0})
                          .Build());
  std::optional<v1::TaskEvent> started =
      sink_.FirstEvent("t-alice", v1::TaskEvent::KIND_STARTED);
  ASSERT_TRUE(started.has_value()) << sink_.Events("t-alice").back().message();
  absl::StatusOr<ProcStatus> status = ReadProcStatus(started->pid());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->uid, ElementsAre(60001, 60001, 60001, 60001));
  EXPECT_THAT(status->gid, ElementsAre(60001, 60001, 60001, 60001));
  EXPECT_THAT(status->groups, ElementsAre(60100, 60101));
  EXPECT_EQ(status->no_new_privs, 1);

  struct stat st;
  ASSERT_EQ(stat(TaskDir("t-alice").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 60001u);
  EXPECT_EQ(st.st_gid, 60001u);
  EXPECT_EQ(st.st_mode & 07777, 0700);
  ASSERT_TRUE(WaitForFile(TaskDir("t-alice") + "/stdout.log"));
  ASSERT_EQ(stat((TaskDir("t-alice") + "/stdout.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 60001u);
  EXPECT_EQ(st.st_mode & 07777, 0600);
  ASSERT_EQ(stat(HintsPath("t-alice").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 60001u);
  EXPECT_EQ(st.st_mode & 07777, 0640);
  for (const std::string dir : {"", "/tasks", "/hints"}) {
    ASSERT_EQ(stat((work_dir_ + dir).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << dir;
    EXPECT_EQ(st.st_mode & 07777, 0711) << dir;
  }
  Release("t-alice");
  std::optional<v1::TaskEvent> exited = WaitForEvent("t-alice", v1::TaskEvent::KIND_EXITED);
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->exit_code(), 0);
  // The agent (root) still reads the user's logs.
  agent.HandleCommand(FetchLogsCommand("req", "t-alice", 100));
  ASSERT_THAT(sink_.Logs(), SizeIs(1));
  EXPECT_EQ(sink_.Logs()[0].stdout(), "out\n");
}

TEST_F(AgentIsolationTest, ATaskCannotReadAnotherTasksFilesOrWriteItsHintsOrTheJournal) {
  CapJournal journal = CapJournal::OpenOrReset(work_dir_ + "/caps.journal", clock_.Now(), nullptr);
  Agent& agent = MakeAgent(1, "", &journal);
  agent.HandleCommand(StartBuilder("t-bob")
                          .User("bob")
                          .Shell(absl::StrCat("echo secret > secret; ", kWaitForGo))
                          .Gpus({0})
                          .Cap(150)  // Journaled: the journal has an entry.
                          .Build());
  ASSERT_TRUE(WaitForFile(TaskDir("t-bob") + "/secret"));
  const std::string journal_before = ReadAll(work_dir_ + "/caps.journal");
  ASSERT_THAT(journal_before, HasSubstr("power_limit_w"));
  const std::string hints_before = ReadAll(HintsPath("t-bob"));

  // Alice's task tries everything and writes down what worked.
  const std::string bob = TaskDir("t-bob");
  const std::string hints = HintsPath("t-bob");
  const std::string attempts = absl::StrCat(
      "try() { if sh -c \"$2\" 2>/dev/null; then echo \"$1 allowed\"; "
      "else echo \"$1 denied\"; fi; }; {",
      " try read-dir 'ls ", bob, "';",
      " try read-file 'cat ", bob, "/secret';",
      " try read-hints 'cat ", hints, "';",
      " try write-hints 'echo stop=1 > ", hints, "';",
      " try replace-hints 'echo stop=1 > h && mv -f h ", hints, "';",
      " try remove-hints 'rm -f ", hints, "';",
      " try write-journal 'echo junk >> ", work_dir_, "/caps.journal';",
      " try replace-journal 'echo junk > j && mv -f j ", work_dir_, "/caps.journal';",
      " try write-work-dir 'touch ", work_dir_, "/x';",
      " try list-work-dir 'ls ", work_dir_, "';",
      " try read-own-hints 'cat \"$JOULE_HINTS_FILE\" > /dev/null';",
      " try write-own-hints 'echo stop=1 > \"$JOULE_HINTS_FILE\"';",
      " try write-progress 'echo progress samples=1 steps=1 >> \"$JOULE_PROGRESS_FILE\"';",
      " } > results");
  agent.HandleCommand(StartBuilder("t-alice").User("alice").Shell(attempts).Build());
  ASSERT_TRUE(sink_.FirstEvent("t-alice", v1::TaskEvent::KIND_STARTED).has_value())
      << sink_.Events("t-alice").back().message();
  ASSERT_TRUE(WaitForEvent("t-alice", v1::TaskEvent::KIND_EXITED).has_value());
  EXPECT_EQ(ReadAll(TaskDir("t-alice") + "/results"),
            "read-dir denied\n"
            "read-file denied\n"
            "read-hints denied\n"
            "write-hints denied\n"
            "replace-hints denied\n"
            "remove-hints denied\n"
            "write-journal denied\n"
            "replace-journal denied\n"
            "write-work-dir denied\n"
            "list-work-dir denied\n"
            "read-own-hints allowed\n"
            "write-own-hints denied\n"
            "write-progress allowed\n");
  EXPECT_EQ(ReadAll(HintsPath("t-bob")), hints_before);
  EXPECT_EQ(ReadAll(work_dir_ + "/caps.journal"), journal_before);
  EXPECT_TRUE(CapJournal::Open(work_dir_ + "/caps.journal").ok());
  // Ended before `journal` goes out of scope.
  Release("t-bob");
  ASSERT_TRUE(WaitForEvent("t-bob", v1::TaskEvent::KIND_EXITED).has_value());
}

TEST_F(AgentIsolationTest, RootLowUidsAndUnknownUsersAreRefusedUnlessAllowed) {
  Agent& agent = MakeAgent(1);
  const struct {
    const char* user;
    const char* reason;
  } refused[] = {
      {"root-user", "\"root-user\" (uid 0): tasks may not run as root"},
      {"daemon-user", "\"daemon-user\" (uid 500): uid below this node's minimum task uid 1000"},
      {"mallory", "\"mallory\" is not in the agent's task user map"},
      {"", "names no user"},
  };
  for (const auto& c : refused) {
    const std::string id = absl::StrCat("t-refused-", c.user);
    agent.HandleCommand(StartBuilder(id).User(c.user).Shell("touch ran").Gpus({0}).Build());
    std::vector<v1::TaskEvent> events = sink_.Events(id);
    ASSERT_THAT(events, SizeIs(1)) << c.user;
    EXPECT_EQ(events[0].kind(), v1::TaskEvent::KIND_START_FAILED) << c.user;
    EXPECT_THAT(events[0].message(), HasSubstr(c.reason)) << c.user;
    EXPECT_FALSE(FileExists(TaskDir(id))) << c.user;
  }
  EXPECT_EQ(agent.running_tasks(), 0);
  // The GPU was never taken.
  EXPECT_DOUBLE_EQ(FindGpu(Telemetry(), 0)->utilization(), 0);

  // Allowed explicitly: root, and no floor.
  allow_root_tasks_ = true;
  min_task_uid_ = 0;
  MakeAgent(0);
  for (const char* user : {"root-user", "daemon-user"}) {
    const std::string id = absl::StrCat("t-allowed-", user);
    agent_->HandleCommand(StartBuilder(id).User(user).Command("/bin/sleep", {"1000"}).Build());
    std::optional<v1::TaskEvent> started = sink_.FirstEvent(id, v1::TaskEvent::KIND_STARTED);
    ASSERT_TRUE(started.has_value()) << user;
    absl::StatusOr<ProcStatus> status = ReadProcStatus(started->pid());
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->uid[0], std::string(user) == "root-user" ? 0 : 500) << user;
    EXPECT_EQ(status->no_new_privs, 1) << user;
  }
}

TEST_F(AgentIsolationTest, NothingOfATaskSurvivesItsExitFoundByTaskId) {
  MakeAgent(0, "/proc");
  ExpectNothingLeftAfter(/*cancel=*/false);
}

TEST_F(AgentIsolationTest, NothingOfATaskSurvivesACancelFoundByTaskId) {
  MakeAgent(0, "/proc");
  ExpectNothingLeftAfter(/*cancel=*/true);
}

// With a cgroup the fixture procfs is the task procfs: no /proc scan can
// find anything, so cgroup.kill alone must do it.
TEST_F(AgentIsolationTest, NothingOfATaskSurvivesItsExitWithACgroup) {
  if (!UseTestCgroup()) GTEST_SKIP() << "no writable cgroup v2";
  MakeAgent(0);
  ExpectNothingLeftAfter(/*cancel=*/false);
}

TEST_F(AgentIsolationTest, NothingOfATaskSurvivesACancelWithACgroup) {
  if (!UseTestCgroup()) GTEST_SKIP() << "no writable cgroup v2";
  MakeAgent(0);
  ExpectNothingLeftAfter(/*cancel=*/true);
}

TEST_F(AgentIsolationTest, KillLeftoverTasksEmptiesTheirCgroups) {
  if (!UseTestCgroup()) GTEST_SKIP() << "no writable cgroup v2";
  // Left by a crashed agent, in its cgroup, with no JOULE_TASK_DIR to find it
  // by: only the cgroup knows it.
  const std::string cgroup = task_cgroup_root_ + "/left-cg";
  ASSERT_EQ(mkdir(cgroup.c_str(), 0755), 0);
  absl::StatusOr<std::unique_ptr<TaskProcess>> leftover = SpawnLeftover("", cgroup);
  ASSERT_TRUE(leftover.ok()) << leftover.status();
  ASSERT_TRUE(PollUntil([&] { return TaskCgroup(cgroup).Pids()->size() == 2; }));
  ASSERT_EQ(mkdir((work_dir_ + "/tasks").c_str(), 0711), 0);
  ASSERT_EQ(mkdir(TaskDir("left-cg").c_str(), 0700), 0);

  Agent& agent = MakeAgent(0);
  EXPECT_EQ(agent.KillLeftoverTasks(), 1);
  EXPECT_TRUE(PollUntil([&] { return (*leftover)->Poll().has_value(); }));
  EXPECT_TRUE(PollUntil([&] {
    agent.Tick();
    return !FileExists(cgroup);
  }));
}

TEST_F(AgentTest, JunkCapsJournalResetsEveryDeviceAndStartsANewJournal) {
  // A crashed agent left GPU 0 capped; then something wrote junk into the
  // journal, so the original is lost.
  const std::string path = work_dir_ + "/caps.journal";
  WriteFile(path, "gpu/GPU-sim-node-a-0/power_limit_w\t250\n\x7f junk line\n");
  std::optional<CapJournal::Reset> reset;
  CapJournal journal = CapJournal::OpenOrReset(path, clock_.Now(), &reset);
  ASSERT_TRUE(reset.has_value());
  std::vector<std::unique_ptr<GpuDevice>> devices;
  for (int i = 0; i < 2; ++i) {
    devices.push_back(std::make_unique<SimulatedGpu>(i, *FindGpuModel("V100"), "node-a",
                                                     clock_.Now()));
  }
  ASSERT_TRUE(devices[0]->SetPowerLimit(150, clock_.Now()).ok());
  GpuDevice* capped = devices[0].get();
  FakeSetting policy{2'000'000};
  CpuSetting with_default = policy.Setting();
  with_default.hardware_default = []() -> absl::StatusOr<double> { return 3'600'000; };
  FakeSetting rapl{60e6};  // No hardware default: left alone.
  Agent& agent = MakeAgent(0, "", &journal, std::move(devices));
  agent.SetCpuSettings({{"cpu/policy0/max_freq_khz", with_default},
                        {"cpu/package0/power_limit_uw", rapl.Setting()}});

  EXPECT_EQ(agent.RecoverFromLostJournal(*reset), 3);
  EXPECT_EQ(capped->power_limit_w(), kV100DefaultCapW);
  EXPECT_EQ(policy.value, 3'600'000);
  EXPECT_EQ(rapl.value, 60e6);
  v1::NodeSample sample = Telemetry();
  for (int32_t index : {0, 1}) {
    EXPECT_DOUBLE_EQ(FindGpu(sample, index)->power_cap_w(), kV100DefaultCapW) << index;
  }
  // Visible: the caps-journal source is degraded, naming where the junk went.
  bool degraded = false;
  const v1::Register reg = agent.MakeRegister();
  for (const v1::SourceStatus& source : reg.node().sources()) {
    if (source.name() != "caps-journal") continue;
    degraded = source.state() == v1::SourceStatus::STATE_DEGRADED;
    EXPECT_THAT(source.message(), HasSubstr(reset->kept_as));
  }
  EXPECT_TRUE(degraded);
  EXPECT_THAT(ReadAll(reset->kept_as), HasSubstr("junk line"));

  // The new journal works: a cap is journaled and forgotten as usual.
  agent.HandleCommand(StartBuilder("t-cap").Shell(kWaitForGo).Gpus({1}).Cap(150).Build());
  absl::StatusOr<CapJournal> on_disk = CapJournal::Open(path);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_EQ(on_disk->entries().size(), 1u);
  Release("t-cap");
  ASSERT_TRUE(WaitForEvent("t-cap", v1::TaskEvent::KIND_EXITED).has_value());
  EXPECT_TRUE(CapJournal::Open(path)->entries().empty());
}

}  // namespace
}  // namespace joule
