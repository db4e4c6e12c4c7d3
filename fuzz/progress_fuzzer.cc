// Fuzz target: the agent's reading of a task's progress file (the task
// contract's "progress samples=N steps=N ...", "shard_done shard=K",
// "target_reached", "waiting" lines), which a task, and so any user, writes.
//
// The parser has no public entry point of its own (it is part of
// Agent::ReadProgress, agent/agent.cc), so the target drives the real Agent:
// one agent per process, with no GPUs and an estimated CPU over a fixture
// /proc/stat, runs one idle task (a shell that waits for the fuzzer to
// exit). Each input is appended to that task's progress file followed by a
// newline, and the agent's next telemetry sample reads it. The task is
// replaced every few megabytes of progress so the file stays small.
//
// Checked, besides never crashing: the usage the agent reports is always
// usable by the scheduler: finite counters, a latency batch size of 0 or
// within 1..2^20, a shards_done range list that parses and stays below the
// task's shard count. State carries over from one input to the next (as it
// does in a real task), so a reproducer may need the inputs before it.

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/devices.h"
#include "agent/task_users.h"
#include "common/clock.h"
#include "common/range_list.h"
#include "fuzz/fuzz_support.h"
#include "joule/v1/agent.pb.h"

namespace joule::fuzz {
namespace {

constexpr int kShardCount = 1000;
constexpr char kTaskUser[] = "fuzz";
// Progress bytes after which the task is replaced by a fresh one.
constexpr int64_t kRotateBytes = int64_t{4} << 20;

// Keeps the latest telemetry. Thread-safe; guarded by mu_.
class LastTelemetry : public MessageSink {
 public:
  void Send(const v1::AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (message.has_telemetry()) last_ = message.telemetry();
  }
  v1::NodeSample Get() const {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  mutable absl::Mutex mu_;
  v1::NodeSample last_ ABSL_GUARDED_BY(mu_);
};

// The one agent and its task. Owned by the fuzzer's single thread.
class Harness {
 public:
  Harness() : root_(FreshDir()) {
    WriteFileOrDie(root_ + "/proc/stat", "cpu  100 0 100 1000 0 0 0 0 0 0\n");
    AgentOptions options;
    options.node_name = "fuzz-node";
    options.work_dir = root_ + "/work";
    options.procfs_root = root_ + "/proc";
    options.cpus = 1;
    options.memory_bytes = int64_t{1} << 30;
    options.base_env = {{"PATH", "/usr/bin:/bin"}};
    // The task runs as the fuzzer's own user (root in CI).
    options.task_users =
        TaskUserMap{{kTaskUser, TaskIdentity{kTaskUser, getuid(), getgid(), {}, ""}}};
    options.min_task_uid = 0;
    options.allow_root_tasks = true;
    agent_ = std::make_unique<Agent>(
        std::move(options), std::vector<std::unique_ptr<GpuDevice>>(),
        std::make_unique<EstimatedCpu>(root_ + "/proc", 100, 20), &clock_);
    agent_->SetSink(&sink_);
    StartTask();
  }

  ~Harness() {
    agent_->StopAllTasks(absl::Milliseconds(1));
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (agent_->running_tasks() > 0 && absl::Now() < deadline) {
      agent_->Tick();
      absl::SleepFor(absl::Milliseconds(5));
    }
    RemoveTree(root_);
  }

  void Feed(const uint8_t* data, size_t size) {
    if (written_ > kRotateBytes) Rotate();
    const int fd = open(progress_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    FUZZ_CHECK_MSG(fd >= 0, "cannot open " + progress_path_);
    std::string line(reinterpret_cast<const char*>(data), size);
    line.push_back('\n');
    FUZZ_CHECK(write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
    close(fd);
    written_ += static_cast<int64_t>(line.size());
    clock_.Advance(absl::Seconds(1));
    agent_->SendTelemetry();
    Check(sink_.Get());
  }

 private:
  void StartTask() {
    task_id_ = absl::StrCat("fuzz-task-", ++tasks_started_);
    v1::SchedulerCommand command;
    v1::StartTask* start = command.mutable_start_task();
    start->set_task_id(task_id_);
    start->set_job_id("fuzz-job");
    start->set_user(kTaskUser);
    start->set_replica_count(1);
    start->set_command("/bin/sh");
    // Waits for the fuzzer (its parent) to go away, however it ends.
    start->add_args("-c");
    start->add_args("while kill -0 \"$PPID\" 2>/dev/null; do sleep 1; done");
    start->set_shard_count(kShardCount);
    start->set_shards(absl::StrCat("0-", kShardCount - 1));
    agent_->HandleCommand(command);
    FUZZ_CHECK_MSG(agent_->running_tasks() == 1,
                   "the agent did not start the fuzz target's task");
    progress_path_ = absl::StrCat(root_, "/work/tasks/", task_id_, "/progress");
    written_ = 0;
  }

  void Rotate() {
    v1::SchedulerCommand command;
    command.mutable_stop_task()->set_task_id(task_id_);
    command.mutable_stop_task()->mutable_grace_period()->set_nanos(1000000);
    agent_->HandleCommand(command);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (agent_->running_tasks() > 0) {
      FUZZ_CHECK_MSG(absl::Now() < deadline, "the fuzz target's task does not stop");
      agent_->Tick();
      absl::SleepFor(absl::Milliseconds(1));
    }
    RemoveTree(absl::StrCat(root_, "/work/tasks/", task_id_));
    StartTask();
  }

  void Check(const v1::NodeSample& sample) const {
    const v1::TaskUsage* usage = nullptr;
    for (const v1::TaskUsage& task : sample.tasks()) {
      if (task.task_id() == task_id_) usage = &task;
    }
    FUZZ_CHECK_MSG(usage != nullptr, "telemetry without the running task");
    FUZZ_CHECK(std::isfinite(usage->samples_done()));
    FUZZ_CHECK(std::isfinite(usage->steps_done()));
    FUZZ_CHECK(std::isfinite(usage->samples_total()) && usage->samples_total() >= 0);
    FUZZ_CHECK(std::isfinite(usage->latency_ms()) && usage->latency_ms() >= 0);
    FUZZ_CHECK(usage->latency_batch_size() == 0 ||
               (usage->latency_batch_size() >= 1 && usage->latency_batch_size() <= (1 << 20)));
    if (usage->has_quality()) FUZZ_CHECK(std::isfinite(usage->quality()));
    absl::StatusOr<std::set<int>> shards = ParseRangeList(usage->shards_done());
    FUZZ_CHECK_MSG(shards.ok(), "shards_done does not parse: " + usage->shards_done());
    if (!shards->empty()) {
      FUZZ_CHECK(*shards->begin() >= 0 && *shards->rbegin() < kShardCount);
    }
  }

  FakeClock clock_;
  LastTelemetry sink_;
  const std::string root_;
  std::unique_ptr<Agent> agent_;
  int tasks_started_ = 0;
  std::string task_id_;
  std::string progress_path_;
  int64_t written_ = 0;
};

Harness* harness = nullptr;

void StopHarness() {
  delete harness;
  harness = nullptr;
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  joule::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using joule::fuzz::harness;
  if (harness == nullptr) {
    harness = new joule::fuzz::Harness();
    atexit(joule::fuzz::StopHarness);
  }
  harness->Feed(data, size);
  return 0;
}
