#include "scheduler/scheduler.h"

#include <stdlib.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "common/range_list.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/carbon.h"
#include "scheduler/store/local_store.h"
#include "scheduler/store/store.h"
#include "scheduler/store/testing/gated_store.h"
#include "scheduler/testing/fake_agent_link.h"

namespace joule {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

using CmdCase = v1::SchedulerCommand::CmdCase;

// ---- Status matchers ----

const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P2(StatusIs, code, substring,
           absl::StrCat("has code ", absl::StatusCodeToString(code),
                        " and a message containing \"", substring, "\"")) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         absl::StrContains(status.message(), substring);
}

// ---- Fakes and fixture builders ----

using scheduler_testing::FakeAgentLink;
// Writes fail with a chosen status while FailWrites is in force (etcd
// restarting: UNAVAILABLE; this scheduler deposed: FAILED_PRECONDITION
// "fenced: ..."), or wait at a gate while it is closed.
using store_testing::GatedStore;
using FlakyStore = store_testing::GatedStore;

v1::Energy Joules(double gpu_j, double cpu_j = 0, double static_j = 0) {
  v1::Energy energy;
  energy.set_gpu_j(gpu_j);
  energy.set_cpu_j(cpu_j);
  energy.set_static_j(static_j);
  energy.set_total_j(gpu_j + cpu_j + static_j);
  return energy;
}

std::string JobIdOf(const std::string& task_id) {
  return task_id.substr(0, task_id.find('.'));
}

// RegisterBuilder("gpu-a").Gpus(4, "V100").Cpus(8).Memory(16 << 30).Build().
class RegisterBuilder {
 public:
  explicit RegisterBuilder(std::string name) {
    v1::NodeInfo* node = register_.mutable_node();
    node->set_name(std::move(name));
    node->set_cpus(8);
    node->set_memory_bytes(int64_t{16} << 30);
    node->set_static_power_w(60);
    node->set_agent_version("joule-agent test");
  }
  RegisterBuilder& Rendezvous(const std::string& address, int32_t low, int32_t high) {
    register_.mutable_node()->set_address(address);
    register_.mutable_node()->set_task_port_min(low);
    register_.mutable_node()->set_task_port_max(high);
    return *this;
  }
  RegisterBuilder& Gpus(int count, const std::string& model) {
    for (int i = 0; i < count; ++i) {
      v1::Device* device = register_.mutable_node()->add_devices();
      device->set_index(gpus_++);
      device->set_kind(v1::DEVICE_KIND_GPU);
      device->set_model(model);
      device->set_uuid(absl::StrCat("GPU-", register_.node().name(), "-", i));
      device->set_memory_bytes(int64_t{16} << 30);
      device->set_power_limit_min_w(100);
      device->set_power_limit_default_w(250);
      device->set_power_limit_max_w(250);
      device->set_idle_power_w(35);
      device->set_source("simulated");
    }
    return *this;
  }
  // Power limits of every GPU added so far.
  RegisterBuilder& PowerLimits(double min_w, double default_w, double max_w) {
    for (v1::Device& device : *register_.mutable_node()->mutable_devices()) {
      device.set_power_limit_min_w(min_w);
      device.set_power_limit_default_w(default_w);
      device.set_power_limit_max_w(max_w);
    }
    return *this;
  }
  RegisterBuilder& Device(const v1::Device& device) {
    *register_.mutable_node()->add_devices() = device;
    return *this;
  }
  RegisterBuilder& Cpus(double cpus) {
    register_.mutable_node()->set_cpus(cpus);
    return *this;
  }
  RegisterBuilder& Memory(int64_t bytes) {
    register_.mutable_node()->set_memory_bytes(bytes);
    return *this;
  }
  RegisterBuilder& Label(const std::string& key, const std::string& value) {
    (*register_.mutable_node()->mutable_labels())[key] = value;
    return *this;
  }
  // A task the agent still runs (as the agent reports it: usage carries the
  // task id).
  RegisterBuilder& Running(const std::string& task_id, int64_t pid,
                           double energy_j = 0) {
    v1::RunningTask* running = register_.add_running_tasks();
    running->set_task_id(task_id);
    running->set_job_id(JobIdOf(task_id));
    running->set_pid(pid);
    running->mutable_usage()->set_task_id(task_id);
    *running->mutable_usage()->mutable_energy() = Joules(energy_j);
    return *this;
  }
  RegisterBuilder& Unacked(const v1::TaskEvent& event) {
    *register_.add_unacked_events() = event;
    return *this;
  }
  v1::Register Build() const { return register_; }

 private:
  v1::Register register_;
  int32_t gpus_ = 0;
};

// SpecBuilder("train").Gpus(1).Replicas(2).Build(); unset fields are left
// for the scheduler's defaults.
class SpecBuilder {
 public:
  explicit SpecBuilder(std::string name = "train") {
    spec_.set_name(std::move(name));
    spec_.set_command("/usr/bin/train");
  }
  SpecBuilder& Gpus(int32_t gpus) {
    spec_.mutable_resources()->set_gpus(gpus);
    return *this;
  }
  SpecBuilder& Replicas(int32_t replicas) {
    spec_.set_replicas(replicas);
    return *this;
  }
  SpecBuilder& Shards(int32_t shard_count) {
    spec_.set_shard_count(shard_count);
    return *this;
  }
  SpecBuilder& BatchSize(int32_t default_size) {
    spec_.mutable_batch_size()->set_default_size(default_size);
    return *this;
  }
  SpecBuilder& Retries(int32_t max_retries, double backoff_s, double max_backoff_s) {
    v1::RestartPolicy* policy = spec_.mutable_restart_policy();
    policy->set_max_retries(max_retries);
    policy->set_backoff_s(backoff_s);
    policy->set_max_backoff_s(max_backoff_s);
    return *this;
  }
  SpecBuilder& RetryOn(const std::vector<v1::RetryOn>& endings) {
    spec_.mutable_restart_policy()->clear_retry_on();
    for (v1::RetryOn ending : endings) spec_.mutable_restart_policy()->add_retry_on(ending);
    return *this;
  }
  SpecBuilder& Mutate(const std::function<void(v1::JobSpec*)>& mutate) {
    mutate(&spec_);
    return *this;
  }
  v1::JobSpec Build() const { return spec_; }

 private:
  v1::JobSpec spec_;
};

// Records every job a watcher is called with. Thread-safe; guarded by mu_.
class JobRecorder {
 public:
  Scheduler::JobWatcher Watcher() {
    return [this](const v1::Job& job) {
      absl::MutexLock lock(&mu_);
      seen_.push_back(job);
    };
  }
  std::vector<v1::Job> Seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  std::vector<v1::JobState> States() const {
    std::vector<v1::JobState> out;
    for (const v1::Job& job : Seen()) out.push_back(job.state());
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::Job> seen_ ABSL_GUARDED_BY(mu_);
};

// Records the results GetTaskLogs completes with.
struct LogsResult {
  int calls = 0;
  absl::StatusOr<v1::GetTaskLogsResponse> last;

  Scheduler::LogsCallback Callback() {
    return [this](absl::StatusOr<v1::GetTaskLogsResponse> response) {
      ++calls;
      last = std::move(response);
    };
  }
};

std::vector<std::string> EventReasons(const v1::Job& job) {
  std::vector<std::string> out;
  for (const v1::JobEvent& event : job.events()) out.push_back(event.reason());
  return out;
}

bool HasEvent(const v1::Job& job, const std::string& reason) {
  for (const v1::JobEvent& event : job.events()) {
    if (event.reason() == reason) return true;
  }
  return false;
}

// The message of the latest event with `reason` ("" if none).
std::string EventMessage(const v1::Job& job, const std::string& reason) {
  std::string message;
  for (const v1::JobEvent& event : job.events()) {
    if (event.reason() == reason) message = event.message();
  }
  return message;
}

// ---- Fixture ----

// A Scheduler on a FakeClock over a LocalStore in a fresh directory.
class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = ::testing::TempDir() + "/scheduler_test_XXXXXX";
    ASSERT_NE(mkdtemp(path.data()), nullptr) << std::strerror(errno);
    dir_ = path;
    OpenStore();
    ASSERT_NE(store_, nullptr);
    scheduler_ = NewScheduler();
    ASSERT_NE(scheduler_, nullptr);
  }

  void OpenStore() {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(dir_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  std::unique_ptr<Scheduler> NewScheduler() {
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(store_.get(), &clock_, options_);
    EXPECT_THAT(scheduler, IsOk());
    return scheduler.ok() ? std::move(*scheduler) : nullptr;
  }

  // A scheduler process restart: the old core goes away, the store is
  // reopened from disk and a new core loads it.
  void Restart() {
    scheduler_.reset();
    store_.reset();
    OpenStore();
    ASSERT_NE(store_, nullptr);
    scheduler_ = NewScheduler();
    ASSERT_NE(scheduler_, nullptr);
  }

  std::string Submit(const v1::JobSpec& spec) {
    absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
    EXPECT_THAT(job, IsOk());
    return job.ok() ? job->id() : "";
  }

  v1::Job LookUpJob(const std::string& job_id) {
    absl::StatusOr<v1::Job> job = scheduler_->GetJob(job_id);
    EXPECT_THAT(job, IsOk());
    return job.ok() ? *job : v1::Job();
  }

  v1::Task LookUpTask(const std::string& task_id) {
    const v1::Job job = LookUpJob(JobIdOf(task_id));
    for (const v1::Task& task : job.tasks()) {
      if (task.task_id() == task_id) return task;
    }
    ADD_FAILURE() << "no task " << task_id << " in " << job.ShortDebugString();
    return v1::Task();
  }

  v1::Node LookUpNode(const std::string& name) {
    absl::StatusOr<v1::Node> node = scheduler_->GetNode(name);
    EXPECT_THAT(node, IsOk());
    return node.ok() ? *node : v1::Node();
  }

  absl::Status Register(FakeAgentLink& link, const v1::Register& message) {
    return scheduler_->OnAgentRegister(&link, message);
  }

  absl::Status SendEvent(FakeAgentLink& link, const v1::TaskEvent& event) {
    v1::AgentMessage message;
    *message.mutable_task_event() = event;
    return scheduler_->OnAgentMessage(&link, message);
  }

  v1::TaskEvent StartedEvent(const std::string& task_id, int64_t pid) {
    v1::TaskEvent event;
    event.set_task_id(task_id);
    event.set_job_id(JobIdOf(task_id));
    event.set_kind(v1::TaskEvent::KIND_STARTED);
    *event.mutable_time() = ToProtoTime(clock_.Now());
    event.set_pid(pid);
    return event;
  }

  v1::TaskEvent ExitedEvent(const std::string& task_id, int32_t exit_code,
                            const v1::Energy& energy = v1::Energy(),
                            bool stopped = false) {
    v1::TaskEvent event;
    event.set_task_id(task_id);
    event.set_job_id(JobIdOf(task_id));
    event.set_kind(v1::TaskEvent::KIND_EXITED);
    *event.mutable_time() = ToProtoTime(clock_.Now());
    event.set_exit_code(exit_code);
    event.set_stopped(stopped);
    event.mutable_usage()->set_task_id(task_id);
    *event.mutable_usage()->mutable_energy() = energy;
    return event;
  }

  absl::Status Started(FakeAgentLink& link, const std::string& task_id,
                       int64_t pid) {
    return SendEvent(link, StartedEvent(task_id, pid));
  }

  absl::Status Exited(FakeAgentLink& link, const std::string& task_id,
                      int32_t exit_code,
                      const v1::Energy& energy = v1::Energy()) {
    return SendEvent(link, ExitedEvent(task_id, exit_code, energy));
  }

  // The exit of a task the agent stopped on request (SIGTERM: 128 + 15).
  absl::Status Stopped(FakeAgentLink& link, const std::string& task_id,
                       const v1::Energy& energy = v1::Energy()) {
    v1::TaskEvent event = ExitedEvent(task_id, 143, energy, /*stopped=*/true);
    event.set_signal(15);
    return SendEvent(link, event);
  }

  absl::Status Telemetry(FakeAgentLink& link, const std::string& task_id,
                         const v1::Energy& energy, double node_power_w = 400) {
    v1::AgentMessage message;
    v1::NodeSample* sample = message.mutable_telemetry();
    *sample->mutable_time() = ToProtoTime(clock_.Now());
    sample->set_node_power_w(node_power_w);
    v1::TaskUsage* usage = sample->add_tasks();
    usage->set_task_id(task_id);
    *usage->mutable_energy() = energy;
    usage->set_steps_done(12);
    return scheduler_->OnAgentMessage(&link, message);
  }

  absl::Status Heartbeat(FakeAgentLink& link) {
    v1::AgentMessage message;
    *message.mutable_heartbeat()->mutable_time() = ToProtoTime(clock_.Now());
    return scheduler_->OnAgentMessage(&link, message);
  }

  // Advances the clock by `d` in steps of at most 5 s, with a heartbeat on
  // `link` after each, so that its node stays alive.
  void AdvanceAlive(FakeAgentLink& link, absl::Duration d) {
    while (d > absl::ZeroDuration()) {
      const absl::Duration step = std::min(d, absl::Seconds(5));
      clock_.Advance(step);
      d -= step;
      EXPECT_THAT(Heartbeat(link), IsOk());
    }
  }

  // A task's progress report of the shards it finished.
  absl::Status ShardsDone(FakeAgentLink& link, const std::string& task_id,
                          const std::string& shards) {
    v1::AgentMessage message;
    v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
    usage->set_task_id(task_id);
    usage->set_shards_done(shards);
    return scheduler_->OnAgentMessage(&link, message);
  }

  // Registers `name` with `gpus` V100s, submits `spec`, places it and
  // reports every task started. Returns the job id.
  std::string RunOneJob(FakeAgentLink& link, const std::string& name, int gpus,
                        const v1::JobSpec& spec) {
    EXPECT_THAT(
        Register(link, RegisterBuilder(name).Gpus(gpus, "V100").Build()),
        IsOk());
    const std::string job_id = Submit(spec);
    scheduler_->Tick();
    const v1::Job job = LookUpJob(job_id);
    EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.ShortDebugString();
    int64_t pid = 1000;
    for (const v1::Task& task : job.tasks()) {
      EXPECT_THAT(Started(link, task.task_id(), pid++), IsOk());
    }
    return job_id;
  }

  // A two-replica sharded inference job, one replica on each of two
  // 4-CPU nodes, both started. Returns the job id and the tasks on node-a
  // and node-b.
  struct TwoReplicas {
    std::string id;
    v1::Task on_a;
    v1::Task on_b;
  };
  TwoReplicas StartShardedInference(FakeAgentLink& a, FakeAgentLink& b, int shards) {
    TwoReplicas out;
    EXPECT_THAT(Register(a, RegisterBuilder("node-a").Cpus(4).Build()), IsOk());
    EXPECT_THAT(Register(b, RegisterBuilder("node-b").Cpus(4).Build()), IsOk());
    v1::JobSpec spec = SpecBuilder().Replicas(2).Shards(shards).Build();
    spec.set_type(v1::JOB_TYPE_INFERENCE);
    spec.mutable_resources()->set_cpus(4);
    out.id = Submit(spec);
    scheduler_->Tick();
    const v1::Job job = LookUpJob(out.id);
    EXPECT_EQ(job.tasks_size(), 2);
    if (job.tasks_size() != 2) return out;
    const bool first_on_a = job.tasks(0).node() == "node-a";
    out.on_a = job.tasks(first_on_a ? 0 : 1);
    out.on_b = job.tasks(first_on_a ? 1 : 0);
    EXPECT_THAT(Started(a, out.on_a.task_id(), 10), IsOk());
    EXPECT_THAT(Started(b, out.on_b.task_id(), 11), IsOk());
    return out;
  }

  // Most tests follow the life cycle at default caps; the power tests below
  // turn profiling on. Store writes are inline, so that every effect of a
  // call (the stored state, a placement's StartTasks) is there when it
  // returns; "Group commit" below runs the writer's thread.
  static SchedulerOptions DefaultCapsOptions() {
    SchedulerOptions options;
    options.profile_caps = false;
    options.learn_batch_size = false;
    options.store_writes.inline_commits = true;
    return options;
  }

  std::string dir_;
  FakeClock clock_;
  SchedulerOptions options_ = DefaultCapsOptions();
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
};

// ---- 1. Submit ----

TEST_F(SchedulerTest, SubmitAppliesDefaultsAndQueues) {
  absl::StatusOr<v1::Job> job =
      scheduler_->SubmitJob(SpecBuilder("train").Build());
  ASSERT_THAT(job, IsOk());

  EXPECT_EQ(job->id(), "job-1");
  EXPECT_EQ(job->state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job->message(), "waiting for placement");
  EXPECT_EQ(FromProtoTime(job->submit_time()), clock_.Now());
  EXPECT_EQ(job->attempts(), 0);
  EXPECT_THAT(job->tasks(), IsEmpty());
  EXPECT_THAT(EventReasons(*job), ElementsAre("Submitted"));
  const v1::JobSpec& spec = job->spec();
  EXPECT_EQ(spec.type(), v1::JOB_TYPE_TRAINING);
  EXPECT_EQ(spec.replicas(), 1);
  EXPECT_EQ(spec.resources().gpus(), 0);
  EXPECT_EQ(spec.resources().cpus(), 1.0);
  EXPECT_EQ(spec.resources().memory_bytes(), int64_t{512} << 20);
  EXPECT_EQ(spec.batch_size().default_size(), 32);
  EXPECT_EQ(spec.batch_size().min(), 32);
  EXPECT_EQ(spec.batch_size().max(), 32);
  EXPECT_EQ(spec.job_class(), "train");
  EXPECT_EQ(spec.objective().goal_case(), v1::Objective::GOAL_NOT_SET);

  EXPECT_THAT(scheduler_->ListJobs({v1::JOB_STATE_PENDING}), SizeIs(1));
  EXPECT_THAT(scheduler_->ListJobs({v1::JOB_STATE_RUNNING}), IsEmpty());
  absl::StatusOr<v1::Job> second =
      scheduler_->SubmitJob(SpecBuilder("eval").Build());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->id(), "job-2");
}

struct InvalidSpecCase {
  std::string name;
  std::function<void(v1::JobSpec*)> mutate;
  // The field the error must name first.
  std::string field;
};

TEST_F(SchedulerTest, SubmitRejectsInvalidSpecAndStoresNothing) {
  const std::vector<InvalidSpecCase> cases = {
      {"empty name", [](v1::JobSpec* s) { s->clear_name(); }, "name"},
      {"upper-case name", [](v1::JobSpec* s) { s->set_name("Train Job"); },
       "name"},
      {"unknown type",
       [](v1::JobSpec* s) { s->set_type(static_cast<v1::JobType>(7)); },
       "type"},
      {"empty command", [](v1::JobSpec* s) { s->clear_command(); }, "command"},
      {"reserved env",
       [](v1::JobSpec* s) { (*s->mutable_env())["JOULE_TASK_ID"] = "x"; },
       "env.JOULE_TASK_ID"},
      {"negative gpus",
       [](v1::JobSpec* s) { s->mutable_resources()->set_gpus(-1); },
       "resources.gpus"},
      {"zero cpus", [](v1::JobSpec* s) { s->mutable_resources()->set_cpus(0); },
       "resources.cpus"},
      {"zero memory",
       [](v1::JobSpec* s) { s->mutable_resources()->set_memory_bytes(0); },
       "resources.memory_bytes"},
      {"zero replicas", [](v1::JobSpec* s) { s->set_replicas(0); }, "replicas"},
      {"batch min above max",
       [](v1::JobSpec* s) {
         s->mutable_batch_size()->set_min(64);
         s->mutable_batch_size()->set_max(16);
       },
       "batch_size"},
      {"fewer shards than replicas",
       [](v1::JobSpec* s) {
         s->set_replicas(4);
         s->set_shard_count(2);
       },
       "shard_count"},
      {"slowdown below one",
       [](v1::JobSpec* s) { s->mutable_objective()->set_max_slowdown(0.5); },
       "objective.max_slowdown"},
      {"deadline in the past",
       [](v1::JobSpec* s) {
         s->mutable_objective()->mutable_deadline()->set_seconds(1000);
       },
       "objective.deadline"},
      {"relative working dir",
       [](v1::JobSpec* s) { s->set_working_dir("data/run"); }, "working_dir"},
  };
  for (const InvalidSpecCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<v1::Job> job =
        scheduler_->SubmitJob(SpecBuilder().Mutate(c.mutate).Build());
    EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument, ""));
    EXPECT_THAT(std::string(job.status().message()), StartsWith(c.field + ":"));
    EXPECT_THAT(scheduler_->ListJobs({}), IsEmpty());
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> stored =
        store_->List("jobs/");
    ASSERT_THAT(stored, IsOk());
    EXPECT_THAT(*stored, IsEmpty());
  }
  // Refused specs use up no job numbers.
  EXPECT_EQ(Submit(SpecBuilder().Build()), "job-1");
}

TEST_F(SchedulerTest, SubmittedJobIsDurable) {
  const std::string first = Submit(SpecBuilder("a").Gpus(1).Build());
  const std::string second = Submit(SpecBuilder("b").Build());
  ASSERT_THAT(scheduler_->CancelJob(second, "no longer needed"), IsOk());
  const v1::Job before_first = LookUpJob(first);
  const v1::Job before_second = LookUpJob(second);

  Restart();

  const v1::Job after_first = LookUpJob(first);
  const v1::Job after_second = LookUpJob(second);
  EXPECT_EQ(after_first.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(after_second.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(before_first,
                                                                 after_first))
      << before_first.ShortDebugString() << "\nvs\n"
      << after_first.ShortDebugString();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(before_second,
                                                                 after_second));
  // Numbering continues after the stored jobs.
  EXPECT_EQ(Submit(SpecBuilder("c").Build()), "job-3");
  // The re-loaded pending job is still queued for placement.
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(first).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(LookUpJob(second).state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerTest, RetriedSubmitWithTheSameRequestIdMakesOneJob) {
  const v1::JobSpec spec = SpecBuilder("once").Build();
  absl::StatusOr<v1::Job> first = scheduler_->SubmitJob(spec, "req-1");
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<v1::Job> again = scheduler_->SubmitJob(spec, "req-1");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->id(), first->id());
  // The same id with another spec is a client bug, not a retry.
  EXPECT_THAT(scheduler_->SubmitJob(SpecBuilder("other").Build(), "req-1"),
              StatusIs(absl::StatusCode::kAlreadyExists, ""));
  // Other ids and no id make new jobs.
  EXPECT_NE(scheduler_->SubmitJob(spec, "req-2")->id(), first->id());
  EXPECT_NE(scheduler_->SubmitJob(spec)->id(), first->id());
  EXPECT_NE(scheduler_->SubmitJob(spec)->id(), first->id());
  EXPECT_THAT(scheduler_->SubmitJob(spec, std::string(194, 'r')),
              StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(scheduler_->ListJobs({}), SizeIs(4));

  // The ids are remembered across a restart.
  Restart();
  absl::StatusOr<v1::Job> after = scheduler_->SubmitJob(spec, "req-1");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->id(), first->id());
  EXPECT_THAT(scheduler_->ListJobs({}), SizeIs(4));
}

// ---- 2. Placement and the task life cycle ----

TEST_F(SchedulerTest, TickPlacesJobAndSendsOneStartTask) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a")
                                 .Gpus(4, "V100")
                                 .PowerLimits(100, 200, 300)
                                 .Build()),
              IsOk());
  ASSERT_THAT(link.Of(v1::SchedulerCommand::kRegisterAck), SizeIs(1));
  const std::string job_id = Submit(SpecBuilder("train")
                                        .Gpus(2)
                                        .Shards(10)
                                        .Mutate([](v1::JobSpec* s) {
                                          s->add_args("--epochs=3");
                                          (*s->mutable_env())["SEED"] = "7";
                                          s->set_working_dir("/data/run");
                                        })
                                        .Build());
  ASSERT_EQ(job_id, "job-1");
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());

  scheduler_->Tick();

  const std::vector<v1::SchedulerCommand> starts =
      link.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  const v1::StartTask& start = starts[0].start_task();
  EXPECT_EQ(start.task_id(), "job-1.r0.a1");
  EXPECT_EQ(start.job_id(), "job-1");
  EXPECT_EQ(start.attempt(), 1);
  EXPECT_EQ(start.replica_index(), 0);
  EXPECT_EQ(start.replica_count(), 1);
  EXPECT_EQ(start.type(), v1::JOB_TYPE_TRAINING);
  EXPECT_EQ(start.command(), "/usr/bin/train");
  EXPECT_THAT(start.args(), ElementsAre("--epochs=3"));
  ASSERT_EQ(start.env().count("SEED"), 1u);
  EXPECT_EQ(start.env().at("SEED"), "7");
  EXPECT_THAT(start.gpu_indices(), ElementsAre(0, 1));
  EXPECT_EQ(start.power_cap_w(), 200);  // The device default, not the max.
  EXPECT_EQ(start.batch_size(), 32);
  EXPECT_EQ(start.shards(), "0-9");
  EXPECT_EQ(start.shard_count(), 10);
  EXPECT_EQ(start.working_dir(), "/data/run");

  const v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 1);
  EXPECT_TRUE(HasEvent(job, "Scheduled"));
  ASSERT_THAT(job.tasks(), SizeIs(1));
  const v1::Task& task = job.tasks(0);
  EXPECT_EQ(task.task_id(), "job-1.r0.a1");
  EXPECT_EQ(task.state(), v1::TASK_STATE_STARTING);
  EXPECT_EQ(task.node(), "gpu-a");
  EXPECT_EQ(task.attempt(), 1);
  EXPECT_THAT(task.gpu_indices(), ElementsAre(0, 1));
  EXPECT_EQ(task.power_cap_w(), 200);
  EXPECT_EQ(task.batch_size(), 32);
  EXPECT_EQ(task.shards(), "0-9");

  const v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.state(), v1::NODE_STATE_READY);
  EXPECT_EQ(node.free_gpus(), 2);
  EXPECT_EQ(node.free_cpus(), 7);
  EXPECT_THAT(node.task_ids(), ElementsAre("job-1.r0.a1"));

  // Placed once: later cycles start nothing more.
  scheduler_->Tick();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
}

TEST_F(SchedulerTest, TaskEventsDriveJobToSucceeded) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(4, "V100").Build()),
              IsOk());
  const std::string job_id =
      Submit(SpecBuilder().Gpus(1).BatchSize(64).Build());
  scheduler_->Tick();
  ASSERT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  EXPECT_EQ(
      link.Of(v1::SchedulerCommand::kStartTask)[0].start_task().batch_size(),
      64);
  EXPECT_EQ(
      link.Of(v1::SchedulerCommand::kStartTask)[0].start_task().power_cap_w(),
      250);

  clock_.Advance(absl::Seconds(1));
  const absl::Time started_at = clock_.Now();
  ASSERT_THAT(Started(link, "job-1.r0.a1", 4242), IsOk());
  v1::Task task = LookUpTask("job-1.r0.a1");
  EXPECT_EQ(task.state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(task.pid(), 4242);
  EXPECT_EQ(FromProtoTime(task.start_time()), started_at);
  EXPECT_EQ(FromProtoTime(LookUpJob(job_id).start_time()), started_at);
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);
  // STARTED is not a final event: nothing to acknowledge.
  EXPECT_THAT(link.AckedTaskIds(), IsEmpty());

  clock_.Advance(absl::Seconds(60));
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0, Joules(900, 80, 20)), IsOk());

  const v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.message(), "all tasks succeeded");
  EXPECT_EQ(FromProtoTime(job.end_time()), clock_.Now());
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(job.tasks(0).exit_code(), 0);
  EXPECT_DOUBLE_EQ(job.tasks(0).energy().total_j(), 1000);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 1000);
  EXPECT_DOUBLE_EQ(job.energy().gpu_j(), 900);
  EXPECT_DOUBLE_EQ(job.energy().cpu_j(), 80);
  EXPECT_DOUBLE_EQ(job.energy().static_j(), 20);
  EXPECT_THAT(EventReasons(job),
              ElementsAre("Submitted", "Scheduled", "TaskStarted",
                          "TaskSucceeded", "SUCCEEDED"));
  EXPECT_THAT(link.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_THAT(link.StoppedTaskIds(), IsEmpty());

  // The GPU is free again.
  const v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.free_gpus(), 4);
  EXPECT_THAT(node.task_ids(), IsEmpty());

  // A duplicate EXITED (agent reconnect) is acknowledged and changes nothing.
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 1), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_THAT(link.AckedTaskIds(), ElementsAre("job-1.r0.a1", "job-1.r0.a1"));
}

TEST_F(SchedulerTest, StartFailedFailsJob) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  v1::TaskEvent event;
  event.set_task_id("job-1.r0.a1");
  event.set_job_id(job_id);
  event.set_kind(v1::TaskEvent::KIND_START_FAILED);
  *event.mutable_time() = ToProtoTime(clock_.Now());
  event.set_message("no such file");
  ASSERT_THAT(SendEvent(link, event), IsOk());

  const v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(job.tasks(0).message(), HasSubstr("no such file"));
  EXPECT_THAT(link.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 1);
}

struct ShardCase {
  int32_t shard_count;
  int32_t replicas;
  std::vector<std::string> shards;
};

TEST_F(SchedulerTest, ReplicasGetContiguousShardRanges) {
  const std::vector<ShardCase> cases = {
      // The sharder's largest-remainder split: extra shards go to the lower
      // replicas.
      {10, 1, {"0-9"}}, {10, 3, {"0-3", "4-6", "7-9"}}, {2, 2, {"0", "1"}},
      {0, 2, {"", ""}}, {5, 4, {"0-1", "2", "3", "4"}},
  };
  FakeAgentLink link;
  // CPU-only jobs on one big CPU node; each case's job ends before the next.
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(16).Build()),
              IsOk());
  for (const ShardCase& c : cases) {
    SCOPED_TRACE(
        absl::StrCat(c.shard_count, " shards, ", c.replicas, " replicas"));
    link.Clear();
    const std::string job_id = Submit(
        SpecBuilder().Replicas(c.replicas).Shards(c.shard_count).Build());
    scheduler_->Tick();
    std::vector<std::string> shards;
    for (const auto& command : link.Of(v1::SchedulerCommand::kStartTask)) {
      EXPECT_EQ(command.start_task().replica_count(), c.replicas);
      EXPECT_EQ(command.start_task().shard_count(), c.shard_count);
      EXPECT_THAT(command.start_task().gpu_indices(), IsEmpty());
      EXPECT_EQ(command.start_task().power_cap_w(), 0);
      shards.push_back(command.start_task().shards());
    }
    EXPECT_EQ(shards, c.shards);
    const v1::Job placed = LookUpJob(job_id);
    for (const v1::Task& task : placed.tasks()) {
      ASSERT_THAT(Exited(link, task.task_id(), 0), IsOk());
    }
    EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_SUCCEEDED);
  }
}

// ---- 3. Unschedulable jobs wait ----

TEST_F(SchedulerTest, JobLargerThanEveryNodeStaysPending) {
  const std::string job_id = Submit(SpecBuilder().Gpus(8).Build());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(LookUpJob(job_id).message(), HasSubstr("unschedulable"));

  FakeAgentLink small;
  ASSERT_THAT(Register(small, RegisterBuilder("gpu-a").Gpus(4, "V100").Build()),
              IsOk());
  scheduler_->Tick();
  v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.message(), HasSubstr("unschedulable"));
  EXPECT_THAT(job.tasks(), IsEmpty());
  EXPECT_EQ(job.attempts(), 0);
  EXPECT_THAT(small.Of(v1::SchedulerCommand::kStartTask), IsEmpty());

  // Held, not refused: a big enough node takes it.
  FakeAgentLink big;
  ASSERT_THAT(Register(big, RegisterBuilder("gpu-b").Gpus(8, "A100").Build()),
              IsOk());
  scheduler_->Tick();
  job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).node(), "gpu-b");
  EXPECT_THAT(big.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  EXPECT_THAT(small.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
}

// A node whose agent only heartbeats has no fresh readings: TelemetryFresh
// keeps work off it (heartbeats alone used to count as telemetry), and its
// next telemetry report lets the work in.
TEST_F(SchedulerTest, HeartbeatsAloneAreNotFreshTelemetry) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  // Alive (a heartbeat every 5 s) but silent on telemetry for longer than
  // the freshness limit.
  AdvanceAlive(link, options_.telemetry_freshness + absl::Seconds(10));
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  absl::StatusOr<v1::JobExplanation> explained = scheduler_->ExplainJob(job_id);
  ASSERT_THAT(explained, IsOk());
  EXPECT_THAT(explained->DebugString(), HasSubstr("no telemetry for"));
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());

  v1::AgentMessage report;
  v1::DeviceSample* device = report.mutable_telemetry()->add_devices();
  device->set_kind(v1::DEVICE_KIND_GPU);
  device->set_index(0);
  device->set_power_w(50);
  device->set_temp_c(40);
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, report), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
}

// A start the node refused because a Kubernetes pod took the GPU in the
// meantime is the node's state: the task is lost and the job retried, not
// failed.
TEST_F(SchedulerTest, StartRefusedForABusyNodeIsRetried) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  const v1::Task task = LookUpTask(absl::StrCat(job_id, ".r0.a1"));
  v1::AgentMessage message;
  v1::TaskEvent* event = message.mutable_task_event();
  event->set_task_id(task.task_id());
  event->set_job_id(job_id);
  event->set_kind(v1::TaskEvent::KIND_START_FAILED);
  event->set_exit_code(127);
  event->set_message("GPU 0 is held by Kubernetes pod team-a/infer-0");
  event->set_node_busy(true);
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  const v1::Job job = LookUpJob(job_id);
  EXPECT_NE(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_LOST);
  EXPECT_THAT(job.tasks(0).message(), HasSubstr("held by Kubernetes pod team-a/infer-0"));
  EXPECT_TRUE(HasEvent(job, "Retrying"));
}

TEST_F(SchedulerTest, QueueKeepsSubmissionOrderPerShapeAndBackfillsOtherShapes) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(4, "V100").Build()), IsOk());
  const std::string running = Submit(SpecBuilder("first").Gpus(3).Build());
  scheduler_->Tick();
  ASSERT_EQ(LookUpJob(running).state(), v1::JOB_STATE_RUNNING);
  // One GPU is left: two 2-GPU jobs wait, a 1-GPU job behind them runs,
  // and a second 1-GPU job waits for the first of the 2-GPU jobs' shape.
  const std::string wide1 = Submit(SpecBuilder("wide1").Gpus(2).Build());
  const std::string wide2 = Submit(SpecBuilder("wide2").Gpus(2).Build());
  const std::string narrow1 = Submit(SpecBuilder("narrow1").Gpus(1).Build());
  const std::string narrow2 = Submit(SpecBuilder("narrow2").Gpus(1).Build());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(wide1).state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(LookUpJob(wide2).state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(LookUpJob(narrow1).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(LookUpJob(narrow2).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(LookUpJob(wide1).message(), HasSubstr("waiting for resources"));
  // The cycle stopped at wide1's failure for its shape; wide2 is explained by
  // that verdict all the same.
  absl::StatusOr<v1::JobExplanation> explained = scheduler_->ExplainJob(wide2);
  ASSERT_THAT(explained, IsOk());
  EXPECT_EQ(explained->job_id(), wide2);
  EXPECT_EQ(explained->outcome(), "RETRY_LATER");
  EXPECT_THAT(explained->reason(), HasSubstr("waiting for resources"));
}

// A job chooses its placement profile by name: first-fit takes the first
// feasible node by name where the default (energy) profile picks the best
// fit; a name no profile has is refused at submission, and a stored job
// whose profile left the configuration waits, saying so.
TEST_F(SchedulerTest, JobsChooseTheirPlacementProfile) {
  FakeAgentLink a, b;
  ASSERT_THAT(Register(a, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  ASSERT_THAT(Register(b, RegisterBuilder("gpu-b").Gpus(4, "V100").Build()), IsOk());
  // Only gpu-b can take it; its last free GPU is then the energy profile's
  // choice (consolidation and GPU fit).
  const std::string filler = Submit(SpecBuilder("filler").Gpus(3).Build());
  scheduler_->Tick();
  ASSERT_EQ(LookUpJob(filler).tasks(0).node(), "gpu-b");

  const std::string energy = Submit(SpecBuilder("energy").Gpus(1).Build());
  const std::string first_fit = Submit(
      SpecBuilder("first-fit")
          .Gpus(1)
          .Mutate([](v1::JobSpec* spec) { spec->set_placement_profile("first-fit"); })
          .Build());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(energy).tasks(0).node(), "gpu-b");
  EXPECT_EQ(LookUpJob(first_fit).tasks(0).node(), "gpu-a");
  absl::StatusOr<v1::JobExplanation> explained = scheduler_->ExplainJob(first_fit);
  ASSERT_THAT(explained, IsOk());
  EXPECT_EQ(explained->profile(), "first-fit");
  EXPECT_EQ(scheduler_->ExplainJob(energy)->profile(), "energy");

  absl::StatusOr<v1::Job> unknown = scheduler_->SubmitJob(
      SpecBuilder("typo")
          .Gpus(1)
          .Mutate([](v1::JobSpec* spec) { spec->set_placement_profile("enrgy"); })
          .Build());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("placement_profile: no profile named enrgy"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("known: energy, first-fit"));

  // A pending first-fit job, then a restart whose configuration has only
  // the energy profile.
  const std::string waiting = Submit(
      SpecBuilder("waiting")
          .Gpus(8)
          .Mutate([](v1::JobSpec* spec) { spec->set_placement_profile("first-fit"); })
          .Build());
  PlacementConfig energy_only;
  energy_only.default_profile = "energy";
  energy_only.profiles = {EnergyProfile()};
  options_.placement_config = energy_only;
  Restart();
  ASSERT_THAT(Register(a, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  scheduler_->Tick();
  const v1::Job job = LookUpJob(waiting);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.message(), HasSubstr("placement profile first-fit is not configured (known: energy)"));

  // A configuration whose default profile it does not define is refused.
  energy_only.default_profile = "first-fit";
  options_.placement_config = energy_only;
  absl::StatusOr<std::unique_ptr<Scheduler>> bad =
      Scheduler::Create(store_.get(), &clock_, options_);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("default_profile first-fit"));
}

// ---- 4. Gangs ----

// A gang meets at a port replica 0 holds on its node: every replica's
// StartTask carries that node's address and the port; the port is held
// while replica 0 runs (another gang gets the next one), released at its
// end, held again after a restart, and a retry gets a fresh one.
TEST_F(SchedulerTest, GangsGetARendezvousPortOnReplicaZerosNode) {
  FakeAgentLink link1, link2;
  ASSERT_THAT(Register(link1, RegisterBuilder("n1").Gpus(2, "V100").Rendezvous("10.0.0.1", 29500, 29502).Build()),
              IsOk());
  ASSERT_THAT(Register(link2, RegisterBuilder("n2").Gpus(2, "V100").Rendezvous("10.0.0.2", 29500, 29502).Build()),
              IsOk());
  const std::string first = Submit(
      SpecBuilder("first").Gpus(1).Replicas(2).Retries(1, 1, 1).RetryOn({v1::RETRY_ON_FAILED}).Build());
  scheduler_->Tick();
  const v1::Task r0 = LookUpTask("job-1.r0.a1");
  ASSERT_GT(r0.rendezvous_port(), 0);
  EXPECT_EQ(r0.rendezvous_port(), 29500);
  const std::string master_node = r0.node();
  const std::string master_addr = master_node == "n1" ? "10.0.0.1" : "10.0.0.2";
  std::vector<v1::SchedulerCommand> starts = link1.Of(v1::SchedulerCommand::kStartTask);
  for (const auto& start : link2.Of(v1::SchedulerCommand::kStartTask)) starts.push_back(start);
  ASSERT_THAT(starts, SizeIs(2));
  for (const v1::SchedulerCommand& start : starts) {
    EXPECT_EQ(start.start_task().master_addr(), master_addr) << start.ShortDebugString();
    EXPECT_EQ(start.start_task().master_port(), 29500) << start.ShortDebugString();
  }
  EXPECT_EQ(LookUpTask("job-1.r1.a1").rendezvous_port(), 0);

  // A second gang: on replica 0's node, the next port.
  Submit(SpecBuilder("second").Gpus(1).Replicas(2).Build());
  scheduler_->Tick();
  const v1::Task second = LookUpTask("job-2.r0.a1");
  EXPECT_EQ(second.rendezvous_port(), second.node() == master_node ? 29501 : 29500);

  // A restart while both run: the agents report them, and their ports stay
  // held: a third gang whose replica 0 lands on either node gets 29502.
  Restart();
  auto reregister = [&](FakeAgentLink& link, const std::string& name, const std::string& address) {
    RegisterBuilder builder(name);
    builder.Gpus(2, "V100").Rendezvous(address, 29500, 29502);
    int pid = 100;
    for (const std::string& id : {"job-1.r0.a1", "job-1.r1.a1", "job-2.r0.a1", "job-2.r1.a1"}) {
      if (LookUpTask(id).node() == name) builder.Running(id, ++pid);
    }
    return Register(link, builder.Build());
  };
  ASSERT_THAT(reregister(link1, "n1", "10.0.0.1"), IsOk());
  ASSERT_THAT(reregister(link2, "n2", "10.0.0.2"), IsOk());
  ASSERT_EQ(LookUpJob(first).state(), v1::JOB_STATE_RUNNING);

  // Replica 0 of the first gang is lost: the port is released, and the
  // retry gets a fresh one (the round robin moved past it).
  auto link_of = [&](const std::string& task_id) -> FakeAgentLink& {
    return LookUpTask(task_id).node() == "n1" ? link1 : link2;
  };
  ASSERT_THAT(Exited(link_of("job-1.r0.a1"), "job-1.r0.a1", 1, Joules(10)), IsOk());
  ASSERT_THAT(Stopped(link_of("job-1.r1.a1"), "job-1.r1.a1", Joules(10)), IsOk());
  v1::Job job = LookUpJob(first);
  ASSERT_EQ(job.state(), v1::JOB_STATE_PENDING) << job.message();
  clock_.Advance(absl::Seconds(5));
  scheduler_->Tick();
  job = LookUpJob(first);
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.message();
  const v1::Task retry = LookUpTask("job-1.r0.a2");
  EXPECT_GT(retry.rendezvous_port(), 0);
  if (retry.node() == master_node) EXPECT_NE(retry.rendezvous_port(), 29500);
  // Held ports are never handed out twice on one node.
  if (retry.node() == second.node()) EXPECT_NE(retry.rendezvous_port(), second.rendezvous_port());
}

// A gang whose replica's node dies: the other replica fails because its
// peer vanished, before the heartbeat timeout says why. The loss, not that
// failure, is the attempt's cause: the job is retried as for a loss.
TEST_F(SchedulerTest, GangSurvivorsFailingAfterALossAreRetriedAsALoss) {
  FakeAgentLink link1, link2;
  ASSERT_THAT(Register(link1, RegisterBuilder("n1").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(Register(link2, RegisterBuilder("n2").Gpus(1, "V100").Build()), IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Replicas(2).Retries(2, 0, 0).Build());
  scheduler_->Tick();
  ASSERT_THAT(Started(link1, "job-1.r0.a1", 11), IsOk());
  ASSERT_THAT(Started(link2, "job-1.r1.a1", 22), IsOk());
  ASSERT_THAT(Exited(link2, "job-1.r1.a1", 1, Joules(5)), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);
  // n1 is silent from now on; n2 keeps talking.
  AdvanceAlive(link2, options_.heartbeat_timeout + absl::Seconds(1));
  scheduler_->Tick();
  const v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_LOST);
  EXPECT_EQ(LookUpTask("job-1.r1.a1").state(), v1::TASK_STATE_FAILED);
  EXPECT_NE(job.state(), v1::JOB_STATE_FAILED) << job.message();
  EXPECT_EQ(job.retries(), 1);
  std::string retrying;
  for (const v1::JobEvent& event : job.events()) {
    if (event.reason() == "Retrying") retrying = event.message();
  }
  EXPECT_THAT(retrying, HasSubstr("task job-1.r0.a1 lost"));
}

TEST_F(SchedulerTest, GangPlacesOneReplicaPerNodeAndFailsTogether) {
  FakeAgentLink link1, link2;
  ASSERT_THAT(Register(link1, RegisterBuilder("n1").Gpus(1, "V100").Build()),
              IsOk());
  ASSERT_THAT(Register(link2, RegisterBuilder("n2").Gpus(1, "V100").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Replicas(2).Build());
  scheduler_->Tick();

  // Ties go to node name order: replica 0 on n1, replica 1 on n2.
  const auto starts1 = link1.Of(v1::SchedulerCommand::kStartTask);
  const auto starts2 = link2.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts1, SizeIs(1));
  ASSERT_THAT(starts2, SizeIs(1));
  EXPECT_EQ(starts1[0].start_task().task_id(), "job-1.r0.a1");
  EXPECT_EQ(starts2[0].start_task().task_id(), "job-1.r1.a1");
  EXPECT_EQ(starts1[0].start_task().replica_count(), 2);
  EXPECT_EQ(starts2[0].start_task().replica_index(), 1);
  EXPECT_THAT(starts1[0].start_task().gpu_indices(), ElementsAre(0));
  EXPECT_THAT(starts2[0].start_task().gpu_indices(), ElementsAre(0));
  EXPECT_EQ(LookUpTask("job-1.r0.a1").node(), "n1");
  EXPECT_EQ(LookUpTask("job-1.r1.a1").node(), "n2");

  ASSERT_THAT(Started(link1, "job-1.r0.a1", 11), IsOk());
  ASSERT_THAT(Started(link2, "job-1.r1.a1", 22), IsOk());

  // Replica 1 fails: replica 0 is told to stop; the job waits for it.
  ASSERT_THAT(Exited(link2, "job-1.r1.a1", 3, Joules(50)), IsOk());
  v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(job.message(), HasSubstr("stopping"));
  EXPECT_EQ(LookUpTask("job-1.r1.a1").state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(LookUpTask("job-1.r1.a1").exit_code(), 3);
  EXPECT_THAT(LookUpTask("job-1.r1.a1").message(),
              HasSubstr("exited with code 3"));
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
  EXPECT_THAT(link1.StoppedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_THAT(link2.StoppedTaskIds(), IsEmpty());
  EXPECT_THAT(link2.AckedTaskIds(), ElementsAre("job-1.r1.a1"));

  ASSERT_THAT(Stopped(link1, "job-1.r0.a1", Joules(70)), IsOk());
  job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.message(), HasSubstr("job-1.r1.a1"));
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_KILLED);
  EXPECT_EQ(LookUpTask("job-1.r1.a1").state(), v1::TASK_STATE_FAILED);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 120);
  EXPECT_THAT(link1.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_EQ(LookUpNode("n1").free_gpus(), 1);
  EXPECT_EQ(LookUpNode("n2").free_gpus(), 1);
}

// ---- 5. Cancel ----

TEST_F(SchedulerTest, CancelPendingJobEndsAtOnce) {
  const std::string job_id = Submit(SpecBuilder().Build());
  absl::StatusOr<v1::Job> cancelled = scheduler_->CancelJob(job_id, "");
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(cancelled->cancel_requested());
  EXPECT_TRUE(cancelled->has_end_time());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_CANCELLED);

  // It is no longer queued.
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Build()), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(LookUpJob(job_id).tasks(), IsEmpty());
}

TEST_F(SchedulerTest, CancelRunningJobStopsTaskThenCancels) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 2, SpecBuilder().Gpus(1).Build());

  absl::StatusOr<v1::Job> after = scheduler_->CancelJob(job_id, "user asked");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(after->cancel_requested());
  EXPECT_TRUE(HasEvent(*after, "CancelRequested"));
  const auto stops = link.Of(v1::SchedulerCommand::kStopTask);
  ASSERT_THAT(stops, Not(IsEmpty()));
  for (const auto& stop : stops) {
    EXPECT_EQ(stop.stop_task().task_id(), "job-1.r0.a1");
    EXPECT_EQ(FromProtoDuration(stop.stop_task().grace_period()),
              options_.stop_grace);
  }
  EXPECT_EQ(stops[0].stop_task().reason(), "user asked");
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
  // A second cancel while stopping is accepted.
  EXPECT_THAT(scheduler_->CancelJob(job_id, ""), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);

  ASSERT_THAT(Stopped(link, "job-1.r0.a1"), IsOk());
  const v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(job.has_end_time());
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_KILLED);
  EXPECT_THAT(link.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 2);
}

TEST_F(SchedulerTest, CancelEndedOrUnknownJobIsRefused) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0), IsOk());
  ASSERT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_SUCCEEDED);

  EXPECT_THAT(scheduler_->CancelJob(job_id, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, "SUCCEEDED"));
  EXPECT_FALSE(LookUpJob(job_id).cancel_requested());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(scheduler_->CancelJob("job-42", ""),
              StatusIs(absl::StatusCode::kNotFound, "job-42"));
  EXPECT_THAT(scheduler_->GetJob("job-42"),
              StatusIs(absl::StatusCode::kNotFound, "job-42"));
}

// ---- 6. Heartbeat timeout ----

TEST_F(SchedulerTest, HeartbeatsKeepNodeReady) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(options_.heartbeat_timeout * 0.6);
    ASSERT_THAT(Heartbeat(link), IsOk());
    scheduler_->Tick();
  }
  // Exactly the timeout is not yet past it.
  clock_.Advance(options_.heartbeat_timeout);
  scheduler_->Tick();
  EXPECT_EQ(LookUpNode("gpu-a").state(), v1::NODE_STATE_READY);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);
}

TEST_F(SchedulerTest, ClosedStreamShowsNodeDownUntilReconnect) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  scheduler_->OnAgentDisconnect(&link);
  // Down at once, but the task is kept until the heartbeat timeout.
  EXPECT_EQ(LookUpNode("gpu-a").state(), v1::NODE_STATE_DOWN);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
  // A message on the closed stream is refused; a new stream adopts the task.
  EXPECT_EQ(Heartbeat(link).code(), absl::StatusCode::kFailedPrecondition);
  FakeAgentLink again;
  v1::Register reg = RegisterBuilder("gpu-a").Gpus(1, "V100").Build();
  v1::RunningTask* running = reg.add_running_tasks();
  running->set_task_id("job-1.r0.a1");
  running->set_job_id(job_id);
  running->set_pid(1000);
  ASSERT_THAT(Register(again, reg), IsOk());
  EXPECT_EQ(LookUpNode("gpu-a").state(), v1::NODE_STATE_READY);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
}

TEST_F(SchedulerTest, SilentNodeIsMarkedDownAndJobRetriedAfterBackoff) {
  FakeAgentLink link_a;
  const std::string job_id =
      RunOneJob(link_a, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  JobRecorder recorder;
  ASSERT_THAT(scheduler_->WatchJob(job_id, recorder.Watcher()), IsOk());

  clock_.Advance(options_.heartbeat_timeout + absl::Seconds(1));
  const absl::Time lost_at = clock_.Now();
  scheduler_->Tick();

  const v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.state(), v1::NODE_STATE_DOWN);
  EXPECT_THAT(node.message(), HasSubstr("no heartbeat"));
  EXPECT_THAT(node.task_ids(), IsEmpty());
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_LOST);
  v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.retries(), 1);
  // The default policy: 3 retries, the first after 10 s.
  EXPECT_EQ(FromProtoTime(job.not_before()), lost_at + absl::Seconds(10));
  EXPECT_TRUE(HasEvent(job, "TaskLost"));
  // The event says which task, which node, how long it was silent, and
  // when the retry comes.
  const std::string why =
      "task job-1.r0.a1 lost (node gpu-a is down: no heartbeat for 11.0s); "
      "retry 1 of 3 in 10s";
  EXPECT_EQ(EventMessage(job, "Retrying"), why);
  EXPECT_EQ(job.message(), why);
  bool saw_retry = false;
  for (const v1::Job& seen : recorder.Seen()) {
    saw_retry |= seen.state() == v1::JOB_STATE_PENDING && seen.message() == why;
  }
  EXPECT_TRUE(saw_retry);
  EXPECT_THAT(link_a.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));

  // A second node is free at once, but the job waits out its backoff.
  FakeAgentLink link_b;
  ASSERT_THAT(
      Register(link_b, RegisterBuilder("gpu-b").Gpus(1, "V100").Build()),
      IsOk());
  scheduler_->Tick();
  clock_.Advance(absl::Seconds(9));
  ASSERT_THAT(Heartbeat(link_b), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link_b.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.message(), why);
  absl::StatusOr<v1::JobExplanation> explanation = scheduler_->ExplainJob(job_id);
  ASSERT_THAT(explanation, IsOk());
  EXPECT_THAT(explanation->note(), HasSubstr("retry backoff"));

  // At not_before, gpu-b takes attempt 2.
  clock_.Advance(absl::Seconds(1));
  ASSERT_THAT(Heartbeat(link_b), IsOk());
  scheduler_->Tick();
  const auto starts = link_b.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  EXPECT_EQ(starts[0].start_task().task_id(), "job-1.r0.a2");
  EXPECT_EQ(starts[0].start_task().attempt(), 2);
  job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 2);
  EXPECT_EQ(job.retries(), 1);
  EXPECT_FALSE(job.has_not_before());
  ASSERT_THAT(job.tasks(), SizeIs(2));
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_LOST);
  EXPECT_EQ(job.tasks(1).task_id(), "job-1.r0.a2");
  EXPECT_EQ(job.tasks(1).node(), "gpu-b");
  EXPECT_EQ(job.tasks(1).state(), v1::TASK_STATE_STARTING);
  EXPECT_THAT(link_a.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));

  // The old agent comes back still reporting attempt 1: it is told to stop.
  ASSERT_THAT(Telemetry(link_a, "job-1.r0.a1", Joules(5)), IsOk());
  EXPECT_THAT(link_a.StoppedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_EQ(LookUpNode("gpu-a").state(), v1::NODE_STATE_READY);
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_LOST);
}

// ---- 6b. The queue: no starvation ----

class StarvationTest : public SchedulerTest {
 protected:
  // A 4-GPU job behind a stream of 1-GPU jobs (two a minute, three minutes
  // each) that keep taking every GPU that frees up. Returns the minute its
  // task was started, or -1 if not within `minutes`.
  int MinuteTheGangStarts(FakeAgentLink& link, int minutes);
};

int StarvationTest::MinuteTheGangStarts(FakeAgentLink& link, int minutes) {
  EXPECT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(4, "V100").Build()), IsOk());
  std::map<std::string, int> ends;  // running small task -> minute it exits
  std::string gang;
  size_t seen = 0;
  for (int minute = 0; minute < minutes; ++minute) {
    for (auto it = ends.begin(); it != ends.end();) {
      if (it->second > minute) {
        ++it;
        continue;
      }
      EXPECT_THAT(Exited(link, it->first, 0), IsOk());
      it = ends.erase(it);
    }
    Submit(SpecBuilder("small").Gpus(1).Build());
    Submit(SpecBuilder("small").Gpus(1).Build());
    if (minute == 1) gang = Submit(SpecBuilder("gang").Gpus(4).Build());
    v1::AgentMessage telemetry;
    *telemetry.mutable_telemetry()->mutable_time() = ToProtoTime(clock_.Now());
    EXPECT_THAT(scheduler_->OnAgentMessage(&link, telemetry), IsOk());
    scheduler_->Tick();
    const std::vector<v1::SchedulerCommand> starts = link.Of(v1::SchedulerCommand::kStartTask);
    for (; seen < starts.size(); ++seen) {
      const v1::StartTask& start = starts[seen].start_task();
      EXPECT_THAT(Started(link, start.task_id(), 100 + static_cast<int64_t>(seen)), IsOk());
      if (start.job_id() == gang) return minute;
      ends[start.task_id()] = minute + 3;
    }
    AdvanceAlive(link, absl::Minutes(1));
  }
  return -1;
}

TEST_F(StarvationTest, ALargeJobIsNotStarvedByAStreamOfSmallOnes) {
  options_.starvation_guard = absl::Minutes(10);
  scheduler_ = NewScheduler();
  FakeAgentLink link;
  const int minute = MinuteTheGangStarts(link, 60);
  // Submitted at minute 1; after 10 minutes it holds the queue, and the
  // small jobs running then end within 3 minutes.
  EXPECT_GE(minute, 11);
  EXPECT_LE(minute, 1 + 10 + 3 + 1);
}

TEST_F(StarvationTest, WithoutTheStarvationGuardTheLargeJobWaitsForever) {
  options_.starvation_guard = absl::ZeroDuration();
  scheduler_ = NewScheduler();
  FakeAgentLink link;
  EXPECT_EQ(MinuteTheGangStarts(link, 60), -1);
}

// A job that would not fit even with every task ended (it needs more GPUs
// than the ready nodes have) never holds the queue.
TEST_F(StarvationTest, AJobThatCannotFitOnReadyNodesDoesNotHoldTheQueue) {
  options_.starvation_guard = absl::Minutes(1);
  scheduler_ = NewScheduler();
  FakeAgentLink a;
  FakeAgentLink b;
  ASSERT_THAT(Register(a, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  ASSERT_THAT(Register(b, RegisterBuilder("gpu-b").Gpus(2, "V100").Build()), IsOk());
  const std::string gang = Submit(SpecBuilder("gang").Replicas(2).Gpus(2).Build());
  // gpu-b goes down: the gang fits the cluster, not its ready nodes.
  AdvanceAlive(a, options_.heartbeat_timeout + absl::Seconds(5));
  scheduler_->Tick();
  ASSERT_EQ(LookUpNode("gpu-b").state(), v1::NODE_STATE_DOWN);
  AdvanceAlive(a, absl::Minutes(2));
  const std::string small = Submit(SpecBuilder("small").Gpus(1).Build());
  v1::AgentMessage telemetry;
  *telemetry.mutable_telemetry()->mutable_time() = ToProtoTime(clock_.Now());
  ASSERT_THAT(scheduler_->OnAgentMessage(&a, telemetry), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(gang).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(LookUpJob(gang).message(), Not(HasSubstr("jobs submitted after it wait")));
  EXPECT_EQ(LookUpJob(small).state(), v1::JOB_STATE_RUNNING);
}

// ---- 7. Restart and adoption ----

class SchedulerRestartTest : public SchedulerTest {
 protected:
  // Scheduler 1 places and starts job-1 on gpu-a, then restarts.
  void StartThenRestart() {
    job_id_ = RunOneJob(old_link_, "gpu-a", 2, SpecBuilder().Gpus(1).Build());
    ASSERT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
    Restart();
    const v1::Job job = LookUpJob(job_id_);
    ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING);
    ASSERT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
    // The node is known only from its task until the agent registers.
    const v1::Node node = LookUpNode("gpu-a");
    EXPECT_EQ(node.state(), v1::NODE_STATE_DOWN);
    EXPECT_THAT(node.task_ids(), ElementsAre("job-1.r0.a1"));
  }

  std::string job_id_;
  FakeAgentLink old_link_;
  FakeAgentLink link_;
};

TEST_F(SchedulerRestartTest, ReportedTaskIsAdoptedNotRestarted) {
  StartThenRestart();
  clock_.Advance(absl::Seconds(3));
  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a")
                                  .Gpus(2, "V100")
                                  .Running("job-1.r0.a1", 1000, 42)
                                  .Build()),
              IsOk());
  scheduler_->Tick();

  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kRegisterAck), SizeIs(1));
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_THAT(link_.StoppedTaskIds(), IsEmpty());
  EXPECT_THAT(link_.All(), SizeIs(1));  // Only the RegisterAck.
  v1::Job job = LookUpJob(job_id_);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 1);
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).task_id(), "job-1.r0.a1");
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(job.tasks(0).attempt(), 1);
  EXPECT_EQ(job.tasks(0).pid(), 1000);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 42);
  const v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.state(), v1::NODE_STATE_READY);
  EXPECT_EQ(node.free_gpus(), 1);  // The adopted task still holds its GPU.
  EXPECT_THAT(node.task_ids(), ElementsAre("job-1.r0.a1"));

  // A second job cannot take the adopted task's GPU.
  Submit(SpecBuilder("other").Gpus(1).Build());
  scheduler_->Tick();
  const auto starts = link_.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  EXPECT_EQ(starts[0].start_task().task_id(), "job-2.r0.a1");
  EXPECT_THAT(starts[0].start_task().gpu_indices(), ElementsAre(1));

  // The adopted task finishes normally.
  ASSERT_THAT(Exited(link_, "job-1.r0.a1", 0, Joules(100)), IsOk());
  EXPECT_EQ(LookUpJob(job_id_).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(link_.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
}

TEST_F(SchedulerRestartTest, UnreportedTaskIsLostAndJobRetried) {
  StartThenRestart();
  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()),
              IsOk());

  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_LOST);
  v1::Job job = LookUpJob(job_id_);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.message(),
            "task job-1.r0.a1 lost (agent on gpu-a does not run the task); "
            "retry 1 of 3 in 10s");
  EXPECT_TRUE(HasEvent(job, "Retrying"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 2);

  scheduler_->Tick();
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());

  // Another restart during the backoff keeps the job's retry time.
  clock_.Advance(absl::Seconds(5));
  Restart();
  FakeAgentLink again;
  ASSERT_THAT(Register(again, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(again.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(LookUpJob(job_id_).retries(), 1);
  clock_.Advance(absl::Seconds(5));
  ASSERT_THAT(Heartbeat(again), IsOk());
  scheduler_->Tick();
  const auto starts = again.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  EXPECT_EQ(starts[0].start_task().task_id(), "job-1.r0.a2");
  job = LookUpJob(job_id_);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 2);
}

// A job cancelled while it waits out its backoff ends at once and is never
// placed again.
TEST_F(SchedulerRestartTest, CancelDuringBackoffEndsTheJob) {
  StartThenRestart();
  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()),
              IsOk());
  ASSERT_EQ(LookUpJob(job_id_).state(), v1::JOB_STATE_PENDING);
  absl::StatusOr<v1::Job> cancelled = scheduler_->CancelJob(job_id_, "");
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(cancelled->has_not_before());
  AdvanceAlive(link_, absl::Seconds(30));
  scheduler_->Tick();
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(LookUpJob(job_id_).state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerRestartTest, UnknownRunningTaskIsStopped) {
  StartThenRestart();
  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a")
                                  .Gpus(2, "V100")
                                  .Running("job-1.r0.a1", 1000)
                                  .Running("job-77.r0.a1", 2000)
                                  .Build()),
              IsOk());
  EXPECT_THAT(link_.StoppedTaskIds(), ElementsAre("job-77.r0.a1"));
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);
  EXPECT_THAT(scheduler_->GetJob("job-77"),
              StatusIs(absl::StatusCode::kNotFound, "job-77"));
}

TEST_F(SchedulerRestartTest, UnackedExitEventCompletesTask) {
  StartThenRestart();
  clock_.Advance(absl::Seconds(30));
  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a")
                                  .Gpus(2, "V100")
                                  .Unacked(ExitedEvent("job-1.r0.a1", 0,
                                                       Joules(300, 20)))
                                  .Build()),
              IsOk());

  const v1::Job job = LookUpJob(job_id_);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_FALSE(HasEvent(job, "TaskLost"));
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 320);
  EXPECT_THAT(link_.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
  EXPECT_THAT(link_.StoppedTaskIds(), IsEmpty());
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 2);

  // Nothing is placed again.
  scheduler_->Tick();
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
}

TEST_F(SchedulerRestartTest, StartingTaskIsAdoptedWhenReported) {
  // Scheduler 1 placed the task but never heard STARTED.
  ASSERT_THAT(
      Register(old_link_, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
      IsOk());
  job_id_ = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  ASSERT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_STARTING);
  Restart();

  ASSERT_THAT(Register(link_, RegisterBuilder("gpu-a")
                                  .Gpus(1, "V100")
                                  .Running("job-1.r0.a1", 77)
                                  .Build()),
              IsOk());
  const v1::Task task = LookUpTask("job-1.r0.a1");
  EXPECT_EQ(task.state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(task.pid(), 77);
  EXPECT_TRUE(HasEvent(LookUpJob(job_id_), "TaskAdopted"));
  scheduler_->Tick();
  EXPECT_THAT(link_.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
}

// ---- 8. Nodes that never come back after a restart ----

TEST_F(SchedulerRestartTest, TasksOfNodesThatNeverReturnAreLost) {
  StartThenRestart();
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);

  clock_.Advance(options_.heartbeat_timeout);
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_RUNNING);

  clock_.Advance(absl::Seconds(1));
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask("job-1.r0.a1").state(), v1::TASK_STATE_LOST);
  const v1::Job job = LookUpJob(job_id_);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_TRUE(HasEvent(job, "Retrying"));
  const v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.state(), v1::NODE_STATE_DOWN);
  EXPECT_THAT(node.task_ids(), IsEmpty());
}

// ---- 9. Telemetry and watchers ----

TEST_F(SchedulerTest, TelemetryUpdatesEnergyWithoutNotifying) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Build());
  JobRecorder recorder;
  ASSERT_THAT(scheduler_->WatchJob(job_id, recorder.Watcher()), IsOk());
  EXPECT_THAT(recorder.States(), ElementsAre(v1::JOB_STATE_PENDING));

  scheduler_->Tick();
  EXPECT_THAT(recorder.States(),
              ElementsAre(v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING));
  ASSERT_THAT(Started(link, "job-1.r0.a1", 5), IsOk());
  ASSERT_THAT(recorder.Seen(), SizeIs(3));
  EXPECT_EQ(recorder.Seen()[2].tasks(0).state(), v1::TASK_STATE_RUNNING);

  ASSERT_THAT(Telemetry(link, "job-1.r0.a1", Joules(10, 2, 1), 333), IsOk());
  ASSERT_THAT(Telemetry(link, "job-1.r0.a1", Joules(20, 4, 2), 334), IsOk());
  const v1::Job job = LookUpJob(job_id);
  EXPECT_DOUBLE_EQ(job.tasks(0).energy().total_j(), 26);
  EXPECT_DOUBLE_EQ(job.tasks(0).steps_done(), 12);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 26);
  EXPECT_DOUBLE_EQ(job.energy().gpu_j(), 20);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_DOUBLE_EQ(LookUpNode("gpu-a").last_sample().node_power_w(), 334);
  EXPECT_THAT(recorder.Seen(), SizeIs(3));  // No notification for usage.
  EXPECT_THAT(link.StoppedTaskIds(), IsEmpty());

  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0, Joules(30, 5, 5)), IsOk());
  EXPECT_THAT(recorder.States(),
              ElementsAre(v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING,
                          v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED));
  EXPECT_DOUBLE_EQ(recorder.Seen().back().energy().total_j(), 40);
}

TEST_F(SchedulerTest, TelemetryForUnexpectedTaskStopsIt) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  ASSERT_THAT(Telemetry(link, "job-9.r0.a1", Joules(1)), IsOk());
  EXPECT_THAT(link.StoppedTaskIds(), ElementsAre("job-9.r0.a1"));
}

TEST_F(SchedulerTest, UnwatchStopsNotifications) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Build());
  JobRecorder kept, dropped;
  absl::StatusOr<int64_t> kept_handle =
      scheduler_->WatchJob(job_id, kept.Watcher());
  absl::StatusOr<int64_t> dropped_handle =
      scheduler_->WatchJob(job_id, dropped.Watcher());
  ASSERT_THAT(kept_handle, IsOk());
  ASSERT_THAT(dropped_handle, IsOk());
  EXPECT_NE(*kept_handle, *dropped_handle);

  scheduler_->Tick();
  EXPECT_THAT(dropped.Seen(), SizeIs(2));
  scheduler_->Unwatch(*dropped_handle);
  ASSERT_THAT(Started(link, "job-1.r0.a1", 5), IsOk());
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0), IsOk());
  EXPECT_THAT(dropped.Seen(), SizeIs(2));
  EXPECT_THAT(kept.States(),
              ElementsAre(v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING,
                          v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED));
  // Unwatching twice, or an unknown handle, is harmless.
  scheduler_->Unwatch(*dropped_handle);
  scheduler_->Unwatch(12345);

  EXPECT_THAT(scheduler_->WatchJob("job-404", kept.Watcher()),
              StatusIs(absl::StatusCode::kNotFound, "job-404"));
}

// ---- 10. Task logs ----

TEST_F(SchedulerTest, GetTaskLogsFetchesFromAgent) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  v1::GetTaskLogsRequest request;
  request.set_job_id(job_id);
  LogsResult result;
  scheduler_->GetTaskLogs(request, result.Callback());
  EXPECT_EQ(result.calls, 0);

  const auto fetches = link.Of(v1::SchedulerCommand::kFetchLogs);
  ASSERT_THAT(fetches, SizeIs(1));
  const v1::FetchLogs& fetch = fetches[0].fetch_logs();
  EXPECT_EQ(fetch.task_id(), "job-1.r0.a1");
  EXPECT_EQ(fetch.max_bytes(), 64 << 10);
  EXPECT_FALSE(fetch.request_id().empty());

  // A reply to some other request is ignored.
  v1::AgentMessage stray;
  stray.mutable_logs()->set_request_id("999/job-1.r0.a1");
  stray.mutable_logs()->set_stdout("wrong");
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, stray), IsOk());
  EXPECT_EQ(result.calls, 0);

  v1::AgentMessage reply;
  reply.mutable_logs()->set_request_id(fetch.request_id());
  reply.mutable_logs()->set_task_id(fetch.task_id());
  reply.mutable_logs()->set_stdout(std::string("epoch 1\n\0x", 10));
  reply.mutable_logs()->set_stderr("warning\n");
  reply.mutable_logs()->set_truncated(true);
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, reply), IsOk());

  ASSERT_EQ(result.calls, 1);
  ASSERT_THAT(result.last, IsOk());
  ASSERT_THAT(result.last->logs(), SizeIs(1));
  const v1::TaskLogs& logs = result.last->logs(0);
  EXPECT_EQ(logs.task_id(), "job-1.r0.a1");
  EXPECT_EQ(logs.node(), "gpu-a");
  EXPECT_EQ(logs.stdout(), std::string("epoch 1\n\0x", 10));
  EXPECT_EQ(logs.stderr(), "warning\n");
  EXPECT_TRUE(logs.truncated());
  EXPECT_EQ(logs.error(), "");

  // A duplicate reply completes nothing twice; neither does a later Tick.
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, reply), IsOk());
  clock_.Advance(options_.logs_timeout);
  scheduler_->Tick();
  EXPECT_EQ(result.calls, 1);
}

TEST_F(SchedulerTest, GetTaskLogsTimesOut) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  v1::GetTaskLogsRequest request;
  request.set_job_id(job_id);
  request.set_task_id("job-1.r0.a1");
  request.set_max_bytes(100);
  LogsResult result;
  scheduler_->GetTaskLogs(request, result.Callback());
  const auto fetches = link.Of(v1::SchedulerCommand::kFetchLogs);
  ASSERT_THAT(fetches, SizeIs(1));
  EXPECT_EQ(fetches[0].fetch_logs().max_bytes(), 100);

  clock_.Advance(options_.logs_timeout - absl::Milliseconds(1));
  scheduler_->Tick();
  EXPECT_EQ(result.calls, 0);
  clock_.Advance(absl::Milliseconds(1));
  scheduler_->Tick();
  ASSERT_EQ(result.calls, 1);
  ASSERT_THAT(result.last, IsOk());
  ASSERT_THAT(result.last->logs(), SizeIs(1));
  EXPECT_EQ(result.last->logs(0).task_id(), "job-1.r0.a1");
  EXPECT_THAT(result.last->logs(0).error(), HasSubstr("timed out"));

  // The late reply is dropped.
  v1::AgentMessage reply;
  reply.mutable_logs()->set_request_id(fetches[0].fetch_logs().request_id());
  reply.mutable_logs()->set_stdout("late");
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, reply), IsOk());
  EXPECT_EQ(result.calls, 1);
}

TEST_F(SchedulerTest, GetTaskLogsErrors) {
  LogsResult unknown;
  v1::GetTaskLogsRequest request;
  request.set_job_id("job-5");
  scheduler_->GetTaskLogs(request, unknown.Callback());
  ASSERT_EQ(unknown.calls, 1);
  EXPECT_THAT(unknown.last, StatusIs(absl::StatusCode::kNotFound, "job-5"));

  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  LogsResult too_big;
  request.set_job_id(job_id);
  request.set_max_bytes(int64_t{5} << 20);
  scheduler_->GetTaskLogs(request, too_big.Callback());
  ASSERT_EQ(too_big.calls, 1);
  EXPECT_THAT(too_big.last,
              StatusIs(absl::StatusCode::kInvalidArgument, "max_bytes"));

  LogsResult no_task;
  request.set_max_bytes(0);
  request.set_task_id("job-1.r7.a1");
  scheduler_->GetTaskLogs(request, no_task.Callback());
  ASSERT_EQ(no_task.calls, 1);
  EXPECT_THAT(no_task.last,
              StatusIs(absl::StatusCode::kNotFound, "job-1.r7.a1"));

  // A disconnected node answers at once with a per-task error.
  scheduler_->OnAgentDisconnect(&link);
  LogsResult down;
  request.clear_task_id();
  scheduler_->GetTaskLogs(request, down.Callback());
  ASSERT_EQ(down.calls, 1);
  ASSERT_THAT(down.last, IsOk());
  ASSERT_THAT(down.last->logs(), SizeIs(1));
  EXPECT_THAT(down.last->logs(0).error(), HasSubstr("down"));
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kFetchLogs), IsEmpty());
}

// ---- 11. Agent protocol errors ----

TEST_F(SchedulerTest, MessageFromUnregisteredLinkIsRefused) {
  FakeAgentLink link;
  v1::AgentMessage heartbeat;
  heartbeat.mutable_heartbeat();
  EXPECT_THAT(
      scheduler_->OnAgentMessage(&link, heartbeat),
      StatusIs(absl::StatusCode::kFailedPrecondition, "not registered"));
  EXPECT_THAT(scheduler_->ListNodes(), IsEmpty());
  EXPECT_THAT(link.All(), IsEmpty());
  scheduler_->OnAgentDisconnect(&link);  // Harmless.
}

struct BadRegisterCase {
  std::string name;
  v1::Register message;
  std::string substring;
};

TEST_F(SchedulerTest, InvalidRegisterIsRefused) {
  v1::Device duplicate;
  duplicate.set_index(0);
  duplicate.set_kind(v1::DEVICE_KIND_GPU);
  duplicate.set_model("V100");
  v1::Device negative = duplicate;
  negative.set_index(-1);
  v1::Device bad_limits = duplicate;
  bad_limits.set_index(5);
  bad_limits.set_power_limit_min_w(300);
  bad_limits.set_power_limit_max_w(100);

  const std::vector<BadRegisterCase> cases = {
      {"empty name", RegisterBuilder("").Gpus(1, "V100").Build(),
       "register.node.name"},
      {"upper-case name", RegisterBuilder("Gpu-A").Build(), "DNS-1123"},
      {"underscore in name", RegisterBuilder("gpu_a").Build(), "register.node.name"},
      {"name too long", RegisterBuilder(std::string(254, 'a')).Build(), "254 characters"},
      {"duplicate gpu index",
       RegisterBuilder("gpu-a").Gpus(2, "V100").Device(duplicate).Build(),
       "duplicate"},
      {"negative index", RegisterBuilder("gpu-a").Device(negative).Build(),
       "negative"},
      {"min limit above max",
       RegisterBuilder("gpu-a").Device(bad_limits).Build(), "power limits"},
      {"negative cpus", RegisterBuilder("gpu-a").Cpus(-1).Build(), "cpus"},
  };
  for (const BadRegisterCase& c : cases) {
    SCOPED_TRACE(c.name);
    FakeAgentLink link;
    EXPECT_THAT(Register(link, c.message),
                StatusIs(absl::StatusCode::kInvalidArgument, c.substring));
    EXPECT_THAT(link.All(), IsEmpty());
    EXPECT_THAT(scheduler_->ListNodes(), IsEmpty());
  }
  // A GPU and a CPU package may share index 0.
  v1::Device cpu;
  cpu.set_index(0);
  cpu.set_kind(v1::DEVICE_KIND_CPU);
  FakeAgentLink link;
  EXPECT_THAT(
      Register(link,
               RegisterBuilder("gpu-a").Gpus(1, "V100").Device(cpu).Build()),
      IsOk());
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 1);
}

TEST_F(SchedulerTest, SecondRegisterOnSameStreamIsRefused) {
  FakeAgentLink link;
  const v1::Register message = RegisterBuilder("gpu-a").Gpus(1, "V100").Build();
  ASSERT_THAT(Register(link, message), IsOk());
  v1::AgentMessage again;
  *again.mutable_register_() = message;
  EXPECT_THAT(scheduler_->OnAgentMessage(&link, again),
              StatusIs(absl::StatusCode::kFailedPrecondition, "register"));
  EXPECT_THAT(scheduler_->OnAgentMessage(&link, v1::AgentMessage()),
              StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
  EXPECT_THAT(scheduler_->ListNodes(), SizeIs(1));
}

TEST_F(SchedulerTest, NewerStreamReplacesOlderOne) {
  FakeAgentLink old_link, new_link;
  ASSERT_THAT(
      Register(old_link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
      IsOk());
  ASSERT_THAT(
      Register(new_link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
      IsOk());
  EXPECT_THAT(Heartbeat(old_link),
              StatusIs(absl::StatusCode::kFailedPrecondition, "replaced"));
  EXPECT_THAT(Heartbeat(new_link), IsOk());
  // The old stream closing does not detach the new one.
  scheduler_->OnAgentDisconnect(&old_link);
  Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  EXPECT_THAT(new_link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  EXPECT_THAT(old_link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
}

// ---- Stops that cannot be delivered while an agent is disconnected ----

// A job cancelled while its agent's stream is closed (but the node is within
// its heartbeat timeout) must still have its task stopped once the agent
// reconnects and reports the task.
TEST_F(SchedulerTest, CancelWhileAgentDisconnectedStopsTaskOnReconnect) {
  FakeAgentLink link;
  const std::string job_id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  scheduler_->OnAgentDisconnect(&link);

  ASSERT_THAT(scheduler_->CancelJob(job_id, "user asked"), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(link.StoppedTaskIds(), IsEmpty());  // No stream to send it on.

  FakeAgentLink reconnected;
  clock_.Advance(absl::Seconds(2));
  ASSERT_THAT(Register(reconnected, RegisterBuilder("gpu-a")
                                        .Gpus(1, "V100")
                                        .Running("job-1.r0.a1", 1000)
                                        .Build()),
              IsOk());
  EXPECT_THAT(reconnected.StoppedTaskIds(), Contains("job-1.r0.a1"));
  ASSERT_THAT(Stopped(reconnected, "job-1.r0.a1"), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_CANCELLED);
}

// The same for a gang whose sibling failed while the other replica's agent
// was disconnected.
TEST_F(SchedulerTest, GangSiblingOnDisconnectedNodeIsStoppedOnReconnect) {
  FakeAgentLink link1, link2;
  ASSERT_THAT(Register(link1, RegisterBuilder("n1").Gpus(1, "V100").Build()),
              IsOk());
  ASSERT_THAT(Register(link2, RegisterBuilder("n2").Gpus(1, "V100").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Replicas(2).Build());
  scheduler_->Tick();
  ASSERT_THAT(Started(link1, "job-1.r0.a1", 11), IsOk());
  ASSERT_THAT(Started(link2, "job-1.r1.a1", 22), IsOk());

  scheduler_->OnAgentDisconnect(&link1);
  ASSERT_THAT(Exited(link2, "job-1.r1.a1", 1), IsOk());
  EXPECT_EQ(LookUpJob(job_id).state(), v1::JOB_STATE_RUNNING);

  FakeAgentLink reconnected;
  ASSERT_THAT(Register(reconnected, RegisterBuilder("n1")
                                        .Gpus(1, "V100")
                                        .Running("job-1.r0.a1", 11)
                                        .Build()),
              IsOk());
  EXPECT_THAT(reconnected.StoppedTaskIds(), Contains("job-1.r0.a1"));
}


v1::SetCap GpuCap(int index, double watts) {
  v1::SetCap cap;
  cap.set_kind(v1::DEVICE_KIND_GPU);
  cap.set_index(index);
  cap.set_power_cap_w(watts);
  return cap;
}

TEST_F(SchedulerTest, NodeCapIsCheckedThenSentToTheAgent) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  // Accepted: sent as is, with a default reason.
  ASSERT_THAT(scheduler_->SetNodeCap("gpu-a", GpuCap(1, 150)), IsOk());
  std::vector<v1::SchedulerCommand> caps = link.Of(v1::SchedulerCommand::kSetCap);
  ASSERT_EQ(caps.size(), 1u);
  EXPECT_EQ(caps[0].set_cap().index(), 1);
  EXPECT_EQ(caps[0].set_cap().power_cap_w(), 150);
  EXPECT_EQ(caps[0].set_cap().reason(), "operator");

  struct Bad {
    std::string node;
    v1::SetCap cap;
    absl::StatusCode code;
    std::string message;
  };
  v1::SetCap cpu_freq_on_gpu_min_above_max = GpuCap(0, 150);
  cpu_freq_on_gpu_min_above_max.set_min_frequency_mhz(1200);
  cpu_freq_on_gpu_min_above_max.set_max_frequency_mhz(1000);
  v1::SetCap rapl_cap;
  rapl_cap.set_kind(v1::DEVICE_KIND_CPU);
  rapl_cap.set_power_cap_w(50);
  const std::vector<Bad> bad = {
      {"nowhere", GpuCap(0, 150), absl::StatusCode::kNotFound, "node nowhere"},
      {"gpu-a", GpuCap(7, 150), absl::StatusCode::kNotFound, "no GPU 7"},
      {"gpu-a", GpuCap(0, 300), absl::StatusCode::kOutOfRange, "[100, 250] W"},
      {"gpu-a", GpuCap(0, 50), absl::StatusCode::kOutOfRange, "[100, 250] W"},
      {"gpu-a", GpuCap(0, -1), absl::StatusCode::kInvalidArgument, "power_cap_w"},
      {"gpu-a", GpuCap(0, 0), absl::StatusCode::kInvalidArgument, "give power_cap_w"},
      {"gpu-a", cpu_freq_on_gpu_min_above_max, absl::StatusCode::kInvalidArgument,
       "must be <= max_frequency_mhz"},
      {"gpu-a", rapl_cap, absl::StatusCode::kNotFound, "no CPU package 0"},
  };
  for (const Bad& c : bad) {
    absl::Status status = scheduler_->SetNodeCap(c.node, c.cap);
    EXPECT_EQ(status.code(), c.code) << c.message << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message)) << status;
  }
  EXPECT_EQ(link.Of(v1::SchedulerCommand::kSetCap).size(), 1u);
  // A node whose stream is gone cannot be capped.
  scheduler_->OnAgentDisconnect(&link);
  EXPECT_EQ(scheduler_->SetNodeCap("gpu-a", GpuCap(0, 150)).code(),
            absl::StatusCode::kUnavailable);
}


// The power controller: just-in-time profiling of a new job class, the cap
// the objective picks, the profile reused by the next job of the class, the
// pinned baseline, and the savings estimate.
class PowerControllerTest : public SchedulerTest {
 protected:
  PowerControllerTest() {
    options_.profile_caps = true;
    options_.profiler.step_w = 50;
    options_.profiler.warmup = absl::Seconds(1);
    options_.profiler.window = absl::Seconds(2);
    options_.profiler.max_window = absl::Seconds(10);
    options_.profiler.max_explore_slowdown = 10;
  }

  // The simulated V100 of agent/devices.h: 35 W idle, 250 W max.
  static double PowerW(double cap_w) { return std::min(cap_w, 35 + 0.9 * 215); }
  static double Throughput(double cap_w) {
    const double f = std::cbrt((PowerW(cap_w) - 35) / (0.9 * 215));
    return 1000 / (0.35 + 0.65 / f);
  }

  // Runs the task for `seconds` of virtual time at whatever cap the
  // scheduler last set, reporting cumulative samples and GPU energy.
  void Run(FakeAgentLink& link, const std::string& task_id, int seconds) {
    for (int i = 0; i < seconds; ++i) {
      double cap = 250;
      for (const auto& command : link.All()) {
        if (command.has_start_task() && command.start_task().task_id() == task_id) {
          cap = command.start_task().power_cap_w();
        }
        if (command.has_set_cap()) cap = command.set_cap().power_cap_w();
      }
      clock_.Advance(absl::Seconds(1));
      samples_ += Throughput(cap);
      gpu_j_ += PowerW(cap);
      v1::AgentMessage message;
      v1::NodeSample* sample = message.mutable_telemetry();
      *sample->mutable_time() = ToProtoTime(clock_.Now());
      v1::TaskUsage* usage = sample->add_tasks();
      usage->set_task_id(task_id);
      usage->set_samples_done(samples_);
      usage->mutable_energy()->set_gpu_j(gpu_j_);
      usage->mutable_energy()->set_total_j(gpu_j_);
      ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
    }
  }

  // Submits a 1-GPU job of class `job_class`, places it, starts it; returns
  // its id. A non-empty `profile_class` goes into the profile-class label.
  std::string StartJob(FakeAgentLink& link, bool pinned = false,
                       const std::string& job_class = "mlp",
                       const std::string& profile_class = "") {
    v1::JobSpec spec = SpecBuilder().Gpus(1).Build();
    spec.set_job_class(job_class);
    spec.set_pin_max_cap(pinned);
    // These tests follow a 1.10x slowdown limit (the default objective, the
    // least total energy, would pick the lowest cap of this device).
    spec.mutable_objective()->set_max_slowdown(1.10);
    if (!profile_class.empty()) {
      (*spec.mutable_labels())["joule.dev/profile-class"] = profile_class;
    }
    absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
    EXPECT_THAT(job, IsOk());
    scheduler_->Tick();
    const std::string task_id = absl::StrCat(job->id(), ".r0.a1");
    EXPECT_THAT(Started(link, task_id, 4242), IsOk());
    samples_ = 0;
    gpu_j_ = 0;
    return job->id();
  }

  double StartCap(FakeAgentLink& link, const std::string& job_id) {
    for (const auto& command : link.Of(v1::SchedulerCommand::kStartTask)) {
      if (command.start_task().job_id() == job_id) return command.start_task().power_cap_w();
    }
    return -1;
  }

  double samples_ = 0;
  double gpu_j_ = 0;
};

TEST_F(PowerControllerTest, ProfilesANewClassThenReusesItsProfile) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());

  // 1. A new class starts at the maximum and is profiled 250, 200, 150, 100 W.
  const std::string first = StartJob(link);
  EXPECT_EQ(StartCap(link, first), 250);
  Run(link, absl::StrCat(first, ".r0.a1"), 20);
  std::vector<double> caps;
  for (const auto& command : link.Of(v1::SchedulerCommand::kSetCap)) {
    caps.push_back(command.set_cap().power_cap_w());
  }
  // The profiling steps, then the objective's choice for a 1.10x slowdown
  // limit on this model: 175 W is not profiled, so 200 W.
  EXPECT_THAT(caps, ElementsAre(200, 150, 100, 200));
  v1::Job job = LookUpJob(first);
  EXPECT_THAT(job.cap_decision(), HasSubstr("profiled 4 caps"));
  EXPECT_THAT(job.cap_decision(), Not(HasSubstr("profiling had not finished")));
  EXPECT_THAT(job.cap_decision(), HasSubstr("200 W"));
  EXPECT_THAT(EventReasons(job), Contains("CapChosen"));
  EXPECT_THAT(store_->Get("profiles/mlp@V100x1"), IsOk());

  // 2. Its end records the saving against the maximum-cap estimate.
  Run(link, absl::StrCat(first, ".r0.a1"), 30);
  v1::TaskEvent exit = ExitedEvent(absl::StrCat(first, ".r0.a1"), 0, v1::Energy());
  exit.mutable_usage()->set_samples_done(samples_);
  exit.mutable_usage()->mutable_energy()->set_gpu_j(gpu_j_);
  exit.mutable_usage()->mutable_energy()->set_total_j(gpu_j_);
  ASSERT_THAT(SendEvent(link, exit), IsOk());
  job = LookUpJob(first);
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_GT(job.savings().estimated_uncapped_gpu_j(), 0);
  EXPECT_GT(job.savings().saved_j(), 0);
  EXPECT_THAT(job.savings().basis(), HasSubstr("at 250 W"));

  // 3. The next job of the class starts at the chosen cap, no profiling,
  //    and so does one after a scheduler restart (profiles are stored).
  const std::string second = StartJob(link);
  EXPECT_EQ(StartCap(link, second), 200);
  EXPECT_THAT(LookUpJob(second).cap_decision(), HasSubstr("stored profile"));
  EXPECT_THAT(EventReasons(LookUpJob(second)), Not(Contains("ProfilingStarted")));
  ASSERT_THAT(Exited(link, absl::StrCat(second, ".r0.a1"), 0), IsOk());
  Restart();
  FakeAgentLink again;
  ASSERT_THAT(Register(again, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string third = StartJob(again);
  EXPECT_EQ(StartCap(again, third), 200);
}

TEST_F(PowerControllerTest, ProfileClassLabelSharesProfilesAcrossJobClasses) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string small = StartJob(link, false, "mlp-small", "mlp");
  Run(link, absl::StrCat(small, ".r0.a1"), 20);
  EXPECT_THAT(LookUpJob(small).cap_decision(), HasSubstr("profiled 4 caps"));
  EXPECT_THAT(store_->Get("profiles/mlp@V100x1"), IsOk());
  EXPECT_FALSE(store_->Get("profiles/mlp-small@V100x1").ok());
  ASSERT_THAT(Exited(link, absl::StrCat(small, ".r0.a1"), 0), IsOk());

  // Another job class with the same label starts at the chosen cap...
  const std::string large = StartJob(link, false, "mlp-large", "mlp");
  EXPECT_EQ(StartCap(link, large), 200);
  EXPECT_THAT(LookUpJob(large).cap_decision(), HasSubstr("stored profile"));
  ASSERT_THAT(Exited(link, absl::StrCat(large, ".r0.a1"), 0), IsOk());
  // ...and one without it is profiled afresh.
  const std::string other = StartJob(link, false, "mlp-large");
  EXPECT_EQ(StartCap(link, other), 250);
  EXPECT_THAT(EventReasons(LookUpJob(other)), Contains("ProfilingStarted"));
}

TEST_F(PowerControllerTest, PinnedJobRunsAtTheMaximumWithoutProfiling) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string id = StartJob(link, /*pinned=*/true);
  EXPECT_EQ(StartCap(link, id), 250);
  Run(link, absl::StrCat(id, ".r0.a1"), 20);
  EXPECT_TRUE(link.Of(v1::SchedulerCommand::kSetCap).empty());
  EXPECT_THAT(LookUpJob(id).cap_decision(), HasSubstr("pinned"));
}

TEST_F(PowerControllerTest, TaskWithoutProgressKeepsTheDefaultCap) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string id = StartJob(link);
  // Energy but no samples: nothing to profile with.
  for (int i = 0; i < 15; ++i) {
    clock_.Advance(absl::Seconds(1));
    v1::Energy energy;
    energy.set_gpu_j(100.0 * (i + 1));
    ASSERT_THAT(Telemetry(link, absl::StrCat(id, ".r0.a1"), energy), IsOk());
  }
  EXPECT_THAT(LookUpJob(id).cap_decision(), HasSubstr("profiling failed"));
  EXPECT_FALSE(store_->Get("profiles/mlp@V100x1").ok());
}


// Batch sizes: a training class with a range learns across recurrences which
// batch size costs the fewest joules per sample.
class BatchSizeTest : public SchedulerTest {
 protected:
  BatchSizeTest() { options_.learn_batch_size = true; }
};

TEST_F(BatchSizeTest, RecurringClassSettlesOnTheCheapestBatchSize) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(64).Build()), IsOk());
  // Energy per sample falls with the batch size up to 64, then rises.
  auto joules_per_sample = [](int32_t batch) {
    return batch == 64 ? 1.0 : batch == 32 || batch == 128 ? 1.5 : 3.0;
  };
  std::map<int32_t, int> chosen;
  for (int run = 0; run < 30; ++run) {
    v1::JobSpec spec = SpecBuilder().Build();
    spec.set_job_class("train");
    spec.mutable_batch_size()->set_min(16);
    spec.mutable_batch_size()->set_default_size(32);
    spec.mutable_batch_size()->set_max(256);
    absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
    ASSERT_THAT(job, IsOk());
    scheduler_->Tick();
    const std::string task_id = absl::StrCat(job->id(), ".r0.a1");
    const v1::Task task = LookUpTask(task_id);
    EXPECT_GE(task.batch_size(), 16);
    EXPECT_LE(task.batch_size(), 256);
    if (run == 0) {
      // The default is tried first.
      EXPECT_EQ(task.batch_size(), 32);
      EXPECT_THAT(LookUpJob(job->id()).batch_decision(), HasSubstr("batch-size bandit"));
    }
    if (run >= 20) ++chosen[task.batch_size()];
    ASSERT_THAT(Started(link, task_id, 100 + run), IsOk());
    v1::TaskEvent exit = ExitedEvent(task_id, 0, v1::Energy());
    exit.mutable_usage()->set_samples_done(1000);
    exit.mutable_usage()->mutable_energy()->set_total_j(1000 * joules_per_sample(task.batch_size()));
    ASSERT_THAT(SendEvent(link, exit), IsOk());
  }
  // After exploring every arm once, it mostly exploits 64.
  EXPECT_GE(chosen[64], 7) << chosen.size();
  // Learned state survives a restart.
  EXPECT_THAT(store_->Get("bandits/train"), IsOk());
}

// A job that declares its size: a large one never gets an untried batch
// size, and a running job whose projected cost is far above the class's best
// is moved to the best batch size mid-run.
TEST_F(BatchSizeTest, LargeJobsExploitAndCostlyRunsAreCorrected) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(64).Build()), IsOk());
  auto start = [&](double expected_samples) {
    v1::JobSpec spec = SpecBuilder().Build();
    spec.set_job_class("train");
    spec.mutable_batch_size()->set_min(16);
    spec.mutable_batch_size()->set_default_size(32);
    spec.mutable_batch_size()->set_max(64);
    spec.set_expected_samples(expected_samples);
    absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
    EXPECT_THAT(job, IsOk());
    scheduler_->Tick();
    const v1::Task task = LookUpTask(absl::StrCat(job->id(), ".r0.a1"));
    EXPECT_THAT(Started(link, task.task_id(), 100), IsOk());
    return task;
  };
  auto finish = [&](const v1::Task& task, double joules) {
    v1::TaskEvent exit = ExitedEvent(task.task_id(), 0, v1::Energy());
    exit.mutable_usage()->set_samples_done(1000);
    exit.mutable_usage()->set_target_reached(true);
    exit.mutable_usage()->mutable_energy()->set_total_j(joules);
    ASSERT_THAT(SendEvent(link, exit), IsOk());
  };
  // Small jobs: 32 (the default) costs 2 J per declared sample, 16 costs 1.
  const v1::Task first = start(1000);
  ASSERT_EQ(first.batch_size(), 32);
  finish(first, 2000);
  const v1::Task second = start(1000);
  ASSERT_EQ(second.batch_size(), 16);
  finish(second, 1000);
  // A job 100x larger than the class's typical one exploits 16; it never
  // tries the untried 64.
  const v1::Task large = start(1e5);
  EXPECT_EQ(large.batch_size(), 16);
  EXPECT_THAT(LookUpJob(JobIdOf(large.task_id())).batch_decision(),
              HasSubstr("only exploits what was measured"));
  // A small job tries 64. After 10% of its work it has spent 500 J: a
  // projected 5 J per declared sample, more than 2x the best (1 at 16).
  const v1::Task costly = start(1000);
  ASSERT_EQ(costly.batch_size(), 64);
  link.Clear();
  v1::AgentMessage message;
  v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
  usage->set_task_id(costly.task_id());
  usage->set_samples_done(100);
  usage->set_samples_total(1000);
  usage->mutable_energy()->set_total_j(500);
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  const std::vector<v1::SchedulerCommand> hints = link.Of(v1::SchedulerCommand::kUpdateHints);
  ASSERT_THAT(hints, SizeIs(1));
  EXPECT_EQ(hints[0].update_hints().task_id(), costly.task_id());
  EXPECT_EQ(hints[0].update_hints().batch_size(), 16);
  const v1::Job corrected = LookUpJob(JobIdOf(costly.task_id()));
  EXPECT_EQ(corrected.tasks(0).batch_size(), 16);
  EXPECT_THAT(EventMessage(corrected, "BatchCorrected"), HasSubstr("moved to 16"));
  // What a sample cost at 64 (5 J) is kept with the projected work ratio, so
  // the next choice does not take 64 for as cheap per sample as the others.
  absl::StatusOr<std::string> run_costs = store_->Get("runcosts/train");
  ASSERT_THAT(run_costs, IsOk());
  EXPECT_THAT(*run_costs, HasSubstr(absl::StrFormat("cell 64 1 %.17g 0 (no GPU)", std::log(5.0))));
  // Only once.
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kUpdateHints), SizeIs(1));
}

// The bandit of a class with declared sizes learns work ratios (samples to
// the target per declared sample), and the joules a sample costs at each
// batch size come from the energy model's runs, per GPU model; both are
// stored and survive a restart.
TEST_F(BatchSizeTest, WorkRatiosAndRunCostsAreLearnedApartAndStored) {
  options_.profile_caps = false;
  scheduler_ = NewScheduler();
  FakeAgentLink v100, a100;
  ASSERT_THAT(Register(v100, RegisterBuilder("gpu-v").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(Register(a100, RegisterBuilder("gpu-a").Gpus(1, "A100").Build()), IsOk());
  auto run = [&](FakeAgentLink& link, const std::string& model, double expected,
                 double samples_per_declared, double joules_per_sample) {
    v1::JobSpec spec = SpecBuilder().Gpus(1).Build();
    spec.set_job_class("train");
    spec.mutable_resources()->set_gpu_model(model);
    spec.mutable_batch_size()->set_min(16);
    spec.mutable_batch_size()->set_default_size(32);
    spec.mutable_batch_size()->set_max(64);
    spec.set_expected_samples(expected);
    absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
    EXPECT_THAT(job, IsOk());
    scheduler_->Tick();
    const v1::Task task = LookUpTask(absl::StrCat(job->id(), ".r0.a1"));
    EXPECT_THAT(Started(link, task.task_id(), 100), IsOk());
    if (samples_per_declared > 0) {
      const double samples = expected * samples_per_declared;
      v1::TaskEvent exit = ExitedEvent(task.task_id(), 0, v1::Energy());
      exit.mutable_usage()->set_samples_done(samples);
      exit.mutable_usage()->set_target_reached(true);
      exit.mutable_usage()->mutable_energy()->set_total_j(samples * joules_per_sample);
      EXPECT_THAT(SendEvent(link, exit), IsOk());
    }
    return LookUpJob(job->id());
  };
  // Small jobs on V100 try 32, 16 and 64. Each needs as many samples as it
  // declared; a sample costs 2, 1 and 3 J there.
  const std::map<int32_t, double> v100_joules = {{16, 1.0}, {32, 2.0}, {64, 3.0}};
  for (int32_t expected_batch : {32, 16, 64}) {
    v1::Job small = run(v100, "V100", 1000, 0, 0);
    ASSERT_EQ(small.tasks(0).batch_size(), expected_batch);
    v1::TaskEvent exit = ExitedEvent(small.tasks(0).task_id(), 0, v1::Energy());
    exit.mutable_usage()->set_samples_done(1000);
    exit.mutable_usage()->set_target_reached(true);
    exit.mutable_usage()->mutable_energy()->set_total_j(1000 * v100_joules.at(expected_batch));
    ASSERT_THAT(SendEvent(v100, exit), IsOk());
  }
  absl::StatusOr<std::string> bandit = store_->Get("bandits/train");
  ASSERT_THAT(bandit, IsOk());
  EXPECT_THAT(*bandit, HasSubstr("unit work_ratio"));
  // The work ratios are all 1: what was learned is not joules.
  EXPECT_THAT(*bandit, HasSubstr("arm 64 1 1 0"));
  ASSERT_THAT(store_->Get("runcosts/train"), IsOk());

  Restart();
  ASSERT_THAT(Register(v100, RegisterBuilder("gpu-v").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(Register(a100, RegisterBuilder("gpu-a").Gpus(1, "A100").Build()), IsOk());
  // A large job on A100, where no run was measured yet, exploits the batch
  // size whose samples are cheapest by the model (V100's batch factors and
  // the mean GPU factor): 16, and it says why.
  const v1::Job large = run(a100, "A100", 1e6, 0, 0);
  EXPECT_EQ(large.tasks(0).batch_size(), 16);
  EXPECT_THAT(large.batch_decision(),
              HasSubstr("samples to target per declared sample x joules per sample on A100 "
                        "(16: 1 J, 32: 2 J, 64: 3 J)"));
}

TEST_F(BatchSizeTest, NoRangeOrPinnedMeansTheDefault) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(64).Build()), IsOk());
  v1::JobSpec spec = SpecBuilder().Build();
  spec.mutable_batch_size()->set_default_size(48);
  spec.mutable_batch_size()->set_min(48);
  spec.mutable_batch_size()->set_max(48);
  absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(spec);
  ASSERT_THAT(job, IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask(absl::StrCat(job->id(), ".r0.a1")).batch_size(), 48);
  EXPECT_THAT(LookUpJob(job->id()).batch_decision(), HasSubstr("no range"));
}


// Sharded inference: a lost replica's unfinished shards go to the replicas
// still running, through hints, and the job finishes without a re-run.
TEST_F(SchedulerTest, LostInferenceReplicaHandsItsShardsToTheOthers) {
  FakeAgentLink a, b;
  const TwoReplicas started = StartShardedInference(a, b, 8);
  ASSERT_FALSE(HasFailure());
  const std::string id = started.id;
  const v1::Task& r0 = started.on_a;
  const v1::Task& r1 = started.on_b;
  v1::Job job;

  // Replica on node-b finished one of its shards, then node-b goes silent.
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  v1::TaskUsage* usage = sample->add_tasks();
  usage->set_task_id(r1.task_id());
  usage->set_shards_done(r1.shards().substr(0, r1.shards().find('-')));
  ASSERT_THAT(scheduler_->OnAgentMessage(&b, message), IsOk());
  clock_.Advance(options_.heartbeat_timeout * 0.6);
  ASSERT_THAT(Heartbeat(a), IsOk());
  clock_.Advance(options_.heartbeat_timeout * 0.6);
  ASSERT_THAT(Heartbeat(a), IsOk());
  scheduler_->Tick();

  // The survivor was told to take the lost replica's 3 unfinished shards;
  // the job keeps running, no new attempt.
  std::vector<std::string> hinted;
  for (const auto& command : a.Of(v1::SchedulerCommand::kUpdateHints)) {
    hinted.push_back(command.update_hints().shards());
  }
  ASSERT_FALSE(hinted.empty());
  absl::StatusOr<std::set<int>> owned = ParseRangeList(hinted.back());
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(owned->size(), 7u);  // its own 4 + the 3 not done by the lost one
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 1);
  EXPECT_THAT(EventReasons(job), Contains("ShardsMoved"));

  // It does them all and exits: the job succeeds, every shard done once.
  v1::TaskEvent exit = ExitedEvent(r0.task_id(), 0, v1::Energy());
  exit.mutable_usage()->set_shards_done(hinted.back());
  ASSERT_THAT(SendEvent(a, exit), IsOk());
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.message();
  EXPECT_THAT(job.message(), HasSubstr("lost on the way"));
}

// A replica that exits with shards never done sends them to a new attempt
// (the finished ones stay finished).
TEST_F(SchedulerTest, ShardsNeverDoneRunAgain) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(16).Build()), IsOk());
  const std::string id = Submit(SpecBuilder().Shards(4).Build());
  scheduler_->Tick();
  const std::string task = absl::StrCat(id, ".r0.a1");
  ASSERT_THAT(Started(link, task, 1), IsOk());
  v1::TaskEvent exit = ExitedEvent(task, 0, v1::Energy());
  exit.mutable_usage()->set_shards_done("0-1");
  ASSERT_THAT(SendEvent(link, exit), IsOk());
  v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.message(), HasSubstr("2 of 4 shards are not done"));
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask(absl::StrCat(id, ".r0.a2")).shards(), "2-3");
  // An attempt that gets none of them done fails the job instead of looping.
  ASSERT_THAT(Started(link, absl::StrCat(id, ".r0.a2"), 2), IsOk());
  ASSERT_THAT(Exited(link, absl::StrCat(id, ".r0.a2"), 0), IsOk());
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.message(), HasSubstr("finished none"));
}


v1::AgentMessage GpuTemps(absl::Time now, const std::vector<double>& temps) {
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(now);
  for (size_t i = 0; i < temps.size(); ++i) {
    v1::DeviceSample* device = sample->add_devices();
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_index(static_cast<int32_t>(i));
    device->set_temp_c(temps[i]);
  }
  return message;
}

// A GPU near its throttle temperature (V100: 83 C, margin 5 C) gets its cap
// stepped down and takes no new work.
TEST_F(SchedulerTest, HotGpuIsCappedAndAvoided) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  const std::string id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  const v1::Task task = LookUpTask(absl::StrCat(id, ".r0.a1"));
  ASSERT_EQ(task.power_cap_w(), 250);
  ASSERT_THAT(Started(link, task.task_id(), 7), IsOk());
  const int hot = task.gpu_indices(0);
  std::vector<double> temps = {40, 40};
  temps[hot] = 79;
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, GpuTemps(clock_.Now(), temps)), IsOk());
  std::vector<v1::SchedulerCommand> caps = link.Of(v1::SchedulerCommand::kSetCap);
  ASSERT_EQ(caps.size(), 1u);
  EXPECT_EQ(caps[0].set_cap().index(), hot);
  EXPECT_EQ(caps[0].set_cap().power_cap_w(), 225);
  EXPECT_EQ(caps[0].set_cap().reason(), "thermal");
  EXPECT_THAT(EventReasons(LookUpJob(id)), Contains("ThermalBackoff"));
  // Still hot: another step; cool: no more.
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, GpuTemps(clock_.Now(), temps)), IsOk());
  EXPECT_EQ(link.Of(v1::SchedulerCommand::kSetCap).back().set_cap().power_cap_w(), 200);
  temps[hot] = 60;
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, GpuTemps(clock_.Now(), temps)), IsOk());
  EXPECT_EQ(link.Of(v1::SchedulerCommand::kSetCap).size(), 2u);

  // New work avoids a hot free GPU: with the other one hot, a 1-GPU job waits.
  ASSERT_THAT(Exited(link, task.task_id(), 0), IsOk());
  temps = {81, 81};
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, GpuTemps(clock_.Now(), temps)), IsOk());
  const std::string second = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  v1::Job job = LookUpJob(second);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.message(), HasSubstr("too hot"));
  temps = {81, 50};
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, GpuTemps(clock_.Now(), temps)), IsOk());
  clock_.Advance(absl::Seconds(3));
  ASSERT_THAT(Heartbeat(link), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask(absl::StrCat(second, ".r0.a1")).gpu_indices(0), 1);
}

// A sample of `gpus` GPUs in which Kubernetes pods hold some outside Joule
// (the agent's --pod-resources-socket): index -> "namespace/pod".
v1::AgentMessage PodHeldSample(absl::Time now, int gpus,
                               const std::map<int32_t, std::string>& held) {
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(now);
  for (int32_t i = 0; i < gpus; ++i) {
    v1::DeviceSample* device = sample->add_devices();
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_index(i);
    device->set_temp_c(40);
    auto pod = held.find(i);
    if (pod == held.end()) continue;
    const size_t slash = pod->second.find('/');
    device->mutable_held_by()->set_namespace_(pod->second.substr(0, slash));
    device->mutable_held_by()->set_pod(pod->second.substr(slash + 1));
    device->mutable_held_by()->set_container("main");
  }
  return message;
}

// A GPU a Kubernetes pod holds is not placed on, and says so; the node's
// free GPU is; once the pod lets go, the GPU takes work again.
TEST_F(SchedulerTest, GpuHeldByAPodIsNotPlacedOnAndAFreeOneIs) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  ASSERT_THAT(scheduler_->OnAgentMessage(
                  &link, PodHeldSample(clock_.Now(), 2, {{0, "team-a/infer-0"}})),
              IsOk());
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 1);

  const std::string first = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(first).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(LookUpTask(absl::StrCat(first, ".r0.a1")).gpu_indices(), ElementsAre(1));
  ASSERT_THAT(Started(link, absl::StrCat(first, ".r0.a1"), 7), IsOk());

  const std::string second = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(second).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(LookUpJob(second).message(),
              HasSubstr("1 held by pods, e.g. gpu-a GPU 0 by team-a/infer-0"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 0);
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));

  // The pod is gone: the next cycle places on GPU 0.
  ASSERT_THAT(scheduler_->OnAgentMessage(&link, PodHeldSample(clock_.Now(), 2, {})), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(second).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(LookUpTask(absl::StrCat(second, ".r0.a1")).gpu_indices(), ElementsAre(0));
}

// Energy budgets: over its projected budget a job's caps step down; at the
// lowest caps it says the budget cannot be met.
TEST_F(SchedulerTest, BudgetTightensCapsThenSaysItCannotBeMet) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  v1::JobSpec spec = SpecBuilder().Gpus(1).Build();
  spec.set_energy_budget_j(1000);
  const std::string id = Submit(spec);
  scheduler_->Tick();
  const std::string task = absl::StrCat(id, ".r0.a1");
  ASSERT_THAT(Started(link, task, 9), IsOk());
  // 100 of 1000 samples cost 200 J: projected 2000 J > 1000 J.
  auto report = [&](double samples, double joules) {
    v1::AgentMessage message;
    v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
    usage->set_task_id(task);
    usage->set_samples_done(samples);
    usage->set_samples_total(1000);
    usage->mutable_energy()->set_total_j(joules);
    usage->mutable_energy()->set_gpu_j(joules);
    ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  };
  report(100, 200);
  std::vector<v1::SchedulerCommand> caps = link.Of(v1::SchedulerCommand::kSetCap);
  ASSERT_EQ(caps.size(), 1u);
  EXPECT_EQ(caps[0].set_cap().power_cap_w(), 225);
  EXPECT_EQ(caps[0].set_cap().reason(), "budget");
  EXPECT_THAT(EventReasons(LookUpJob(id)), Contains("BudgetTightened"));
  // Not again within 5 s.
  report(110, 220);
  EXPECT_EQ(link.Of(v1::SchedulerCommand::kSetCap).size(), 1u);
  // Step by step to the minimum (100 W), then the job says so, once.
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Seconds(6));
    report(120 + i, 240 + 2 * i);
  }
  EXPECT_EQ(link.Of(v1::SchedulerCommand::kSetCap).back().set_cap().power_cap_w(), 100);
  v1::Job job = LookUpJob(id);
  EXPECT_TRUE(job.over_budget());
  EXPECT_THAT(EventReasons(job), Contains("BudgetCannotBeMet"));
  // Within budget: nothing happens.
  FakeAgentLink other;
  ASSERT_THAT(Register(other, RegisterBuilder("gpu-b").Gpus(1, "V100").Build()), IsOk());
  v1::JobSpec cheap = SpecBuilder().Gpus(1).Build();
  cheap.set_energy_budget_j(1e6);
  const std::string cheap_id = Submit(cheap);
  scheduler_->Tick();
  EXPECT_THAT(EventReasons(LookUpJob(cheap_id)), Not(Contains("BudgetTightened")));
}


// Early stop: a task whose loss stops improving for `patience` reports gets
// a stop hint; it ends SUCCEEDED, marked stopped early, with the projected
// saving in the events.
TEST_F(SchedulerTest, QualityThatStopsImprovingStopsTheTaskEarly) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(8).Build()), IsOk());
  v1::JobSpec spec = SpecBuilder().Build();
  spec.mutable_early_stop()->set_patience(2);
  spec.mutable_early_stop()->set_min_delta(0.01);
  const std::string id = Submit(spec);
  scheduler_->Tick();
  const std::string task = absl::StrCat(id, ".r0.a1");
  ASSERT_THAT(Started(link, task, 5), IsOk());
  double samples = 0;
  auto report = [&](double quality) {
    samples += 100;
    v1::AgentMessage message;
    v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
    usage->set_task_id(task);
    usage->set_samples_done(samples);
    usage->set_samples_total(1000);
    usage->set_quality(quality);
    usage->mutable_energy()->set_total_j(samples * 2);
    ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  };
  auto stops = [&] {
    int n = 0;
    for (const auto& command : link.Of(v1::SchedulerCommand::kUpdateHints)) {
      n += command.update_hints().stop();
    }
    return n;
  };
  report(1.0);
  report(0.8);    // improved
  report(0.795);  // within min_delta: stale 1
  report(0.795);  // the same report repeated by telemetry: not counted
  EXPECT_EQ(stops(), 0);
  report(0.80);   // stale 2 = patience
  EXPECT_EQ(stops(), 1);
  v1::Job job = LookUpJob(id);
  EXPECT_TRUE(job.tasks(0).stopped_early());
  EXPECT_THAT(EventReasons(job), Contains("StoppedEarly"));
  bool projected = false;
  for (const v1::JobEvent& event : job.events()) {
    projected |= event.reason() == "StoppedEarly" &&
                 absl::StrContains(event.message(), "about 1000 J saved");
  }
  EXPECT_TRUE(projected);
  // The workload obeys and exits 0: stopped early, not failed.
  ASSERT_THAT(Exited(link, task, 0), IsOk());
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(job.tasks(0).message(), HasSubstr("stopped-early"));
  // Without early_stop nothing is stopped.
  const std::string other = Submit(SpecBuilder().Build());
  scheduler_->Tick();
  EXPECT_EQ(stops(), 1);
  (void)other;
}


// A replica that runs out of shards and says it waits for more gets some
// of the slowest replica's remaining shards through hints.
TEST_F(SchedulerTest, WaitingReplicaTakesShardsFromTheSlowest) {
  FakeAgentLink a, b;
  const TwoReplicas started = StartShardedInference(a, b, 20);
  ASSERT_FALSE(HasFailure());
  const std::string id = started.id;
  const v1::Task& fast = started.on_a;
  const v1::Task& slow = started.on_b;
  clock_.Advance(absl::Seconds(10));
  auto report = [&](FakeAgentLink& link, const v1::Task& task, double samples,
                    const std::string& done, bool waiting) {
    v1::AgentMessage message;
    v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
    usage->set_task_id(task.task_id());
    usage->set_samples_done(samples);
    usage->set_shards_done(done);
    usage->set_waiting_for_shards(waiting);
    ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  };
  // The slow replica did 1 of its 10 shards; the fast one all of its own.
  report(b, slow, 100, slow.shards().substr(0, slow.shards().find('-')), false);
  report(a, fast, 1000, fast.shards(), false);
  EXPECT_TRUE(a.Of(v1::SchedulerCommand::kUpdateHints).empty());  // not waiting: nothing moves
  report(a, fast, 1000, fast.shards(), true);
  std::vector<v1::SchedulerCommand> hints = a.Of(v1::SchedulerCommand::kUpdateHints);
  ASSERT_FALSE(hints.empty());
  absl::StatusOr<std::set<int>> moved = ParseRangeList(hints.back().update_hints().shards());
  ASSERT_TRUE(moved.ok());
  EXPECT_GE(moved->size(), 5u);  // most of the slow replica's 9 remaining
  EXPECT_FALSE(b.Of(v1::SchedulerCommand::kUpdateHints).empty());
  EXPECT_THAT(EventReasons(LookUpJob(id)), Contains("ShardsMoved"));
}


// Inference under a latency SLO: the batch grows to the largest candidate
// whose measured (or conservatively extrapolated) p95 latency fits, and
// shrinks when a measurement says it does not.
TEST_F(SchedulerTest, InferenceBatchFollowsTheLatencySlo) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(8).Build()), IsOk());
  v1::JobSpec spec = SpecBuilder().Build();
  spec.set_type(v1::JOB_TYPE_INFERENCE);
  spec.set_latency_slo_ms(100);
  spec.mutable_batch_size()->set_min(16);
  spec.mutable_batch_size()->set_default_size(32);
  spec.mutable_batch_size()->set_max(256);
  const std::string id = Submit(spec);
  scheduler_->Tick();
  const std::string task = absl::StrCat(id, ".r0.a1");
  ASSERT_EQ(LookUpTask(task).batch_size(), 32);
  ASSERT_THAT(Started(link, task, 3), IsOk());
  auto report = [&](int32_t batch, double latency) {
    v1::AgentMessage message;
    v1::TaskUsage* usage = message.mutable_telemetry()->add_tasks();
    usage->set_task_id(task);
    usage->set_latency_batch_size(batch);
    usage->set_latency_ms(latency);
    ASSERT_THAT(scheduler_->OnAgentMessage(&link, message), IsOk());
  };
  auto hinted = [&] {
    std::vector<v1::SchedulerCommand> hints = link.Of(v1::SchedulerCommand::kUpdateHints);
    return hints.empty() ? 0 : hints.back().update_hints().batch_size();
  };
  // 20 ms at 32: latency grows at least in proportion, so 128 (80 ms) fits.
  report(32, 20);
  EXPECT_EQ(hinted(), 128);
  EXPECT_EQ(LookUpTask(task).batch_size(), 128);
  EXPECT_THAT(EventReasons(LookUpJob(id)), Contains("BatchResized"));
  // Measured 130 ms at 128: too slow; back to the largest that fits (64).
  clock_.Advance(absl::Seconds(5));
  report(128, 130);
  EXPECT_EQ(hinted(), 64);
  EXPECT_THAT(LookUpJob(id).batch_decision(), HasSubstr("within 100.0 ms"));
}

// ---- 10. Restart policy ----

// An agent that comes back without a task loses it; each loss is retried
// after backoff_s x 2^(retries used), capped at max_backoff_s, until the
// retries run out.
TEST_F(SchedulerTest, LostAttemptsRetryWithDoublingBackoffThenFail) {
  std::deque<FakeAgentLink> links(1);
  ASSERT_THAT(Register(links.back(), RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  const std::string id = Submit(SpecBuilder().Gpus(1).Retries(3, 10, 25).Build());
  scheduler_->Tick();
  const std::vector<std::pair<absl::Duration, std::string>> waits = {
      {absl::Seconds(10), "10s"}, {absl::Seconds(20), "20s"}, {absl::Seconds(25), "25s"}};
  for (int retry = 1; retry <= 3; ++retry) {
    SCOPED_TRACE(absl::StrCat("retry ", retry));
    const std::string task = absl::StrCat(id, ".r0.a", retry);
    ASSERT_THAT(Started(links.back(), task, 100 + retry), IsOk());
    // The agent restarts and no longer runs the task.
    links.emplace_back();
    ASSERT_THAT(Register(links.back(), RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
                IsOk());
    const v1::Job job = LookUpJob(id);
    ASSERT_EQ(job.state(), v1::JOB_STATE_PENDING) << job.message();
    EXPECT_EQ(job.retries(), retry);
    const auto& [wait, text] = waits[retry - 1];
    EXPECT_EQ(FromProtoTime(job.not_before()), clock_.Now() + wait);
    EXPECT_EQ(job.message(), absl::StrCat("task ", task,
                                          " lost (agent on gpu-a does not run the task); "
                                          "retry ",
                                          retry, " of 3 in ", text));
    EXPECT_EQ(EventMessage(job, "Retrying"), job.message());
    // Not placed a second before not_before, placed at it.
    AdvanceAlive(links.back(), wait - absl::Seconds(1));
    scheduler_->Tick();
    EXPECT_THAT(links.back().Of(v1::SchedulerCommand::kStartTask), IsEmpty());
    EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_PENDING);
    AdvanceAlive(links.back(), absl::Seconds(1));
    scheduler_->Tick();
    const auto starts = links.back().Of(v1::SchedulerCommand::kStartTask);
    ASSERT_THAT(starts, SizeIs(1));
    EXPECT_EQ(starts[0].start_task().task_id(), absl::StrCat(id, ".r0.a", retry + 1));
  }

  // The fourth loss finds the retries exhausted.
  ASSERT_THAT(Started(links.back(), absl::StrCat(id, ".r0.a4"), 200), IsOk());
  links.emplace_back();
  ASSERT_THAT(Register(links.back(), RegisterBuilder("gpu-a").Gpus(1, "V100").Build()),
              IsOk());
  const v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.attempts(), 4);
  EXPECT_EQ(job.retries(), 3);
  EXPECT_TRUE(job.has_end_time());
  EXPECT_EQ(job.message(),
            "task job-1.r0.a4 lost (agent on gpu-a does not run the task); "
            "3 retries exhausted");
  EXPECT_EQ(EventMessage(job, "FAILED"), job.message());
  AdvanceAlive(links.back(), absl::Minutes(10));
  scheduler_->Tick();
  EXPECT_THAT(links.back().Of(v1::SchedulerCommand::kStartTask), IsEmpty());
}

// A failed exit retries only when retry_on lists `failed`; a lost task
// only when it lists `lost` (the default).
TEST_F(SchedulerTest, RetryOnDecidesWhichEndingsRetry) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(2, "V100").Build()), IsOk());
  const std::string plain = Submit(SpecBuilder("plain").Gpus(1).Build());
  const std::string both = Submit(
      SpecBuilder("both").Gpus(1).RetryOn({v1::RETRY_ON_LOST, v1::RETRY_ON_FAILED}).Build());
  scheduler_->Tick();
  ASSERT_THAT(Started(link, absl::StrCat(plain, ".r0.a1"), 10), IsOk());
  ASSERT_THAT(Started(link, absl::StrCat(both, ".r0.a1"), 11), IsOk());
  ASSERT_THAT(Exited(link, absl::StrCat(plain, ".r0.a1"), 1), IsOk());
  ASSERT_THAT(Exited(link, absl::StrCat(both, ".r0.a1"), 1), IsOk());

  // The default policy: a failed exit fails the job at once.
  v1::Job job = LookUpJob(plain);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.message(), "task job-1.r0.a1 exited with code 1");
  EXPECT_EQ(job.retries(), 0);
  EXPECT_FALSE(HasEvent(job, "Retrying"));

  // retry_on [lost, failed]: it runs again after the backoff.
  job = LookUpJob(both);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.retries(), 1);
  EXPECT_EQ(job.message(), "task job-2.r0.a1 exited with code 1; retry 1 of 3 in 10s");
  AdvanceAlive(link, absl::Seconds(10));
  scheduler_->Tick();
  auto starts = link.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(3));
  EXPECT_EQ(starts[2].start_task().task_id(), "job-2.r0.a2");
  ASSERT_THAT(Started(link, "job-2.r0.a2", 12), IsOk());

  // retry_on [failed]: a lost task fails the job.
  const std::string failed_only =
      Submit(SpecBuilder("failed-only").Gpus(1).RetryOn({v1::RETRY_ON_FAILED}).Build());
  scheduler_->Tick();
  ASSERT_THAT(Started(link, "job-3.r0.a1", 13), IsOk());
  FakeAgentLink restarted;
  ASSERT_THAT(Register(restarted, RegisterBuilder("gpu-a")
                                      .Gpus(2, "V100")
                                      .Running("job-2.r0.a2", 12)
                                      .Build()),
              IsOk());
  job = LookUpJob(failed_only);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.message(),
            "task job-3.r0.a1 lost (agent on gpu-a does not run the task); lost tasks "
            "are not retried (restart_policy.retry_on)");
  EXPECT_EQ(LookUpJob(both).state(), v1::JOB_STATE_RUNNING);
}

// max_retries: 0 fails the job at the first loss.
TEST_F(SchedulerTest, NoRetriesAllowedFailsAtTheFirstLoss) {
  FakeAgentLink link;
  const std::string id =
      RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Retries(0, 10, 300).Build());
  clock_.Advance(options_.heartbeat_timeout + absl::Seconds(1));
  scheduler_->Tick();
  const v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.message(),
            "task job-1.r0.a1 lost (node gpu-a is down: no heartbeat for 11.0s); no "
            "retries allowed (restart_policy.max_retries: 0)");
}

// Training replicas are a gang: a lost one ends the attempt (its shards do
// not move to the sibling being stopped), and the retry gets exactly the
// shards no attempt finished.
TEST_F(SchedulerTest, LostTrainingReplicaSendsItsUnfinishedShardsToTheRetry) {
  FakeAgentLink a, b;
  ASSERT_THAT(Register(a, RegisterBuilder("node-a").Cpus(4).Build()), IsOk());
  ASSERT_THAT(Register(b, RegisterBuilder("node-b").Cpus(4).Build()), IsOk());
  const std::string id = Submit(SpecBuilder()
                                    .Replicas(2)
                                    .Shards(8)
                                    .Mutate([](v1::JobSpec* spec) {
                                      spec->mutable_resources()->set_cpus(4);
                                    })
                                    .Build());
  scheduler_->Tick();
  v1::Job job = LookUpJob(id);
  ASSERT_THAT(job.tasks(), SizeIs(2));
  const bool first_on_a = job.tasks(0).node() == "node-a";
  const v1::Task on_a = job.tasks(first_on_a ? 0 : 1);
  const v1::Task on_b = job.tasks(first_on_a ? 1 : 0);
  absl::StatusOr<std::set<int>> shards_a = ParseRangeList(on_a.shards());
  absl::StatusOr<std::set<int>> shards_b = ParseRangeList(on_b.shards());
  ASSERT_TRUE(shards_a.ok() && shards_b.ok());
  ASSERT_EQ(shards_a->size(), 4u);
  ASSERT_EQ(shards_b->size(), 4u);
  const std::vector<int> mine_a(shards_a->begin(), shards_a->end());
  const std::vector<int> mine_b(shards_b->begin(), shards_b->end());
  ASSERT_THAT(Started(a, on_a.task_id(), 10), IsOk());
  ASSERT_THAT(Started(b, on_b.task_id(), 11), IsOk());

  // Replica on b finishes one shard, the one on a two; then b goes silent.
  ASSERT_THAT(ShardsDone(b, on_b.task_id(), absl::StrCat(mine_b[0])), IsOk());
  ASSERT_THAT(ShardsDone(a, on_a.task_id(), FormatRangeList({mine_a[0], mine_a[1]})), IsOk());
  AdvanceAlive(a, options_.heartbeat_timeout + absl::Seconds(1));
  scheduler_->Tick();
  EXPECT_EQ(LookUpTask(on_b.task_id()).state(), v1::TASK_STATE_LOST);
  EXPECT_THAT(a.StoppedTaskIds(), ElementsAre(on_a.task_id()));
  EXPECT_THAT(a.Of(v1::SchedulerCommand::kUpdateHints), IsEmpty());
  EXPECT_FALSE(HasEvent(LookUpJob(id), "ShardsMoved"));

  // The stopped replica finished a third shard on its way out.
  v1::TaskEvent stopped = ExitedEvent(on_a.task_id(), 143, v1::Energy(), /*stopped=*/true);
  stopped.set_signal(15);
  stopped.mutable_usage()->set_shards_done(
      FormatRangeList({mine_a[0], mine_a[1], mine_a[2]}));
  ASSERT_THAT(SendEvent(a, stopped), IsOk());
  job = LookUpJob(id);
  ASSERT_EQ(job.state(), v1::JOB_STATE_PENDING) << job.message();
  EXPECT_EQ(job.retries(), 1);
  EXPECT_THAT(job.message(),
              HasSubstr(absl::StrCat("task ", on_b.task_id(), " lost (node node-b")));

  // node-b's agent comes back; after the backoff the retry gets the rest.
  AdvanceAlive(a, absl::Seconds(10));
  FakeAgentLink b2;
  ASSERT_THAT(Register(b2, RegisterBuilder("node-b").Cpus(4).Build()), IsOk());
  scheduler_->Tick();
  job = LookUpJob(id);
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.message();
  EXPECT_EQ(job.attempts(), 2);
  std::set<int> retried;
  int retry_tasks = 0;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != 2) continue;
    ++retry_tasks;
    absl::StatusOr<std::set<int>> owned = ParseRangeList(task.shards());
    ASSERT_TRUE(owned.ok()) << task.shards();
    EXPECT_FALSE(owned->empty()) << task.task_id();
    for (int shard : *owned) EXPECT_TRUE(retried.insert(shard).second) << shard;
  }
  EXPECT_EQ(retry_tasks, 2);
  const std::set<int> not_done = {mine_a[3], mine_b[1], mine_b[2], mine_b[3]};
  EXPECT_EQ(retried, not_done);
  // What the agents were told matches.
  std::set<int> started;
  for (FakeAgentLink* link : {&a, &b2}) {
    const auto starts = link->Of(v1::SchedulerCommand::kStartTask);
    ASSERT_FALSE(starts.empty());
    EXPECT_EQ(starts.back().start_task().attempt(), 2);
    absl::StatusOr<std::set<int>> owned = ParseRangeList(starts.back().start_task().shards());
    ASSERT_TRUE(owned.ok());
    started.insert(owned->begin(), owned->end());
  }
  EXPECT_EQ(started, not_done);
}

// ---- 11. Durability before action ----

// A scheduler whose store can be made to refuse writes.
class SchedulerDurabilityTest : public SchedulerTest {
 protected:
  void SetUp() override {
    SchedulerTest::SetUp();
    flaky_ = std::make_unique<FlakyStore>(store_.get());
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(flaky_.get(), &clock_, options_);
    ASSERT_THAT(scheduler, IsOk());
    scheduler_ = *std::move(scheduler);
  }
  void TearDown() override { scheduler_.reset(); }

  // The job as the store has it.
  v1::Job StoredJob(const std::string& job_id) {
    absl::StatusOr<std::string> value = store_->Get(absl::StrCat("jobs/", job_id));
    EXPECT_THAT(value, IsOk());
    v1::Job job;
    if (value.ok()) {
      EXPECT_TRUE(job.ParseFromString(*value));
    }
    return job;
  }

  std::unique_ptr<FlakyStore> flaky_;
};

TEST_F(SchedulerDurabilityTest, PlacementNotStoredIsNotStartedAndPlacedLater) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  const std::string id = Submit(SpecBuilder().Gpus(1).Shards(4).Build());
  flaky_->FailWrites(absl::UnavailableError("etcd: connection refused"));
  scheduler_->Tick();

  // Nothing started; the placement is undone.
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.attempts(), 0);
  EXPECT_THAT(job.tasks(), IsEmpty());
  EXPECT_TRUE(job.shard_state().empty());
  EXPECT_FALSE(HasEvent(job, "Scheduled"));
  EXPECT_THAT(job.message(), HasSubstr("not started: the store refused the write"));
  v1::Node node = LookUpNode("gpu-a");
  EXPECT_EQ(node.free_gpus(), 1);
  EXPECT_THAT(node.task_ids(), IsEmpty());
  Scheduler::StoreHealth health = scheduler_->GetStoreHealth();
  EXPECT_EQ(health.unstored_jobs, 1);
  EXPECT_EQ(health.last_error.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StoredJob(id).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(StoredJob(id).tasks(), IsEmpty());

  // Still down: the unstored job is tried once per tick, nothing is placed.
  const int refused = flaky_->refused_writes();
  AdvanceAlive(link, absl::Seconds(3));
  scheduler_->Tick();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(flaky_->refused_writes(), refused + 1);

  // Back: attempt 1 is stored, then started once, with every shard.
  flaky_->Heal();
  scheduler_->Tick();
  const auto starts = link.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  EXPECT_EQ(starts[0].start_task().task_id(), "job-1.r0.a1");
  EXPECT_EQ(starts[0].start_task().attempt(), 1);
  EXPECT_EQ(starts[0].start_task().shards(), "0-3");
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 1);
  const v1::Job stored = StoredJob(id);
  EXPECT_EQ(stored.state(), v1::JOB_STATE_RUNNING);
  ASSERT_THAT(stored.tasks(), SizeIs(1));
  EXPECT_EQ(stored.tasks(0).state(), v1::TASK_STATE_STARTING);
  health = scheduler_->GetStoreHealth();
  EXPECT_THAT(health.last_error, IsOk());
  EXPECT_EQ(health.unstored_jobs, 0);
}

// A deposed scheduler's writes are fenced: its jobs stay unstored and are
// written (latest state) once the store takes writes again.
TEST_F(SchedulerDurabilityTest, UnstoredChangesAreWrittenAgainAtTheNextTick) {
  FakeAgentLink link;
  const std::string id = RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  ASSERT_EQ(StoredJob(id).tasks(0).state(), v1::TASK_STATE_RUNNING);
  flaky_->FailWrites(absl::FailedPreconditionError("fenced: lease 7 lost the election"));
  ASSERT_THAT(Telemetry(link, "job-1.r0.a1", Joules(20), 300), IsOk());
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0, Joules(50)), IsOk());
  EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(StoredJob(id).state(), v1::JOB_STATE_RUNNING);
  Scheduler::StoreHealth health = scheduler_->GetStoreHealth();
  EXPECT_EQ(health.unstored_jobs, 1);
  EXPECT_EQ(health.last_error.code(), absl::StatusCode::kFailedPrecondition);

  scheduler_->Tick();
  EXPECT_EQ(StoredJob(id).state(), v1::JOB_STATE_RUNNING);

  flaky_->Heal();
  scheduler_->Tick();
  const v1::Job stored = StoredJob(id);
  EXPECT_EQ(stored.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(stored.tasks(0).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(stored.energy().total_j(), 50);
  health = scheduler_->GetStoreHealth();
  EXPECT_THAT(health.last_error, IsOk());
  EXPECT_EQ(health.unstored_jobs, 0);
}

// Submission stays all or nothing: a refused write refuses the job, and
// the store is told to forget whatever of it may have landed (a failed
// write's outcome is unknown). Its number is skipped, never handed out to
// another job.
TEST_F(SchedulerDurabilityTest, SubmitRefusedWhenTheStoreIs) {
  flaky_->FailWrites(absl::UnavailableError("etcd: connection refused"));
  EXPECT_THAT(scheduler_->SubmitJob(SpecBuilder().Build()),
              StatusIs(absl::StatusCode::kUnavailable, "connection refused"));
  EXPECT_THAT(scheduler_->ListJobs({}), IsEmpty());
  EXPECT_THAT(scheduler_->GetJob("job-1"), StatusIs(absl::StatusCode::kNotFound, ""));
  flaky_->Heal();
  absl::StatusOr<v1::Job> job = scheduler_->SubmitJob(SpecBuilder().Build());
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->id(), "job-2");

  // The refused write landed after all: the next tick deletes it.
  ASSERT_THAT(store_->Put("jobs/job-1", "landed anyway"), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(store_->Get("jobs/job-1"), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(store_->Get("jobs/job-2"), IsOk());
  const Scheduler::StoreHealth health = scheduler_->GetStoreHealth();
  EXPECT_THAT(health.last_error, IsOk());
  EXPECT_EQ(health.unstored_jobs, 0);
  EXPECT_THAT(scheduler_->ListJobs({}), SizeIs(1));
}

// ---- 11b. Group commit: no store I/O under the lock ----

// The scheduler with its writer thread (the default, as joule-scheduler
// runs) over a GatedStore on the fixture's LocalStore.
class GroupCommitTest : public SchedulerTest {
 protected:
  void SetUp() override {
    options_.store_writes.inline_commits = false;
    SchedulerTest::SetUp();
    scheduler_.reset();
    gated_ = std::make_unique<GatedStore>(store_.get());
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(gated_.get(), &clock_, options_);
    ASSERT_THAT(scheduler, IsOk());
    scheduler_ = *std::move(scheduler);
  }
  void TearDown() override {
    gated_->Open();
    scheduler_.reset();
  }

  // The job as the store has it; NOT_FOUND when it has none.
  absl::StatusOr<v1::Job> StoredJob(const std::string& job_id) {
    absl::StatusOr<std::string> value = store_->Get(absl::StrCat("jobs/", job_id));
    if (!value.ok()) return value.status();
    v1::Job job;
    if (!job.ParseFromString(*value)) return absl::DataLossError("does not parse");
    return job;
  }

  // Registers a one-GPU node and submits a one-GPU job (the store open).
  std::string NodeAndJob(FakeAgentLink& link, const v1::JobSpec& spec) {
    EXPECT_THAT(Register(link, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
    return Submit(spec);
  }

  // Wait (without sleeping) until `n` writes queue behind the commit held
  // at the gate / until `n` writes were queued in all.
  void AwaitQueued(int64_t n) {
    while (scheduler_->StoreWriterStats().queued < n) std::this_thread::yield();
  }
  void AwaitEnqueued(int64_t n) {
    while (scheduler_->StoreWriterStats().enqueued < n) std::this_thread::yield();
  }

  std::unique_ptr<GatedStore> gated_;
};

// SubmitJob answers only once its job is durable; while it waits, the
// scheduler is not locked (other calls answer, more submissions queue up),
// and the submissions that queued meanwhile share one commit.
TEST_F(GroupCommitTest, SubmitAnswersOnlyOnceDurableAndSubmissionsShareCommits) {
  gated_->Close();
  std::atomic<bool> answered{false};
  absl::StatusOr<v1::Job> first = absl::UnknownError("not answered");
  std::thread submitter([&] {
    first = scheduler_->SubmitJob(SpecBuilder("first").Build(), "req-1");
    answered = true;
  });
  gated_->AwaitArrived(1);
  // Held in the store: not answered, not visible, not stored.
  EXPECT_FALSE(answered);
  EXPECT_THAT(scheduler_->GetJob("job-1"), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(scheduler_->ListJobs({}), IsEmpty());
  EXPECT_THAT(StoredJob("job-1"), StatusIs(absl::StatusCode::kNotFound, ""));
  scheduler_->Tick();  // the lock is free while the commit is held

  // Eight more, and a retry of the first request, while the commit is held.
  constexpr int kMore = 8;
  std::vector<absl::StatusOr<v1::Job>> more(kMore, absl::UnknownError("not answered"));
  absl::StatusOr<v1::Job> retried = absl::UnknownError("not answered");
  std::vector<std::thread> submitters;
  for (int i = 0; i < kMore; ++i) {
    submitters.emplace_back([&, i] {
      more[i] = scheduler_->SubmitJob(SpecBuilder(absl::StrCat("more-", i)).Build());
    });
  }
  submitters.emplace_back(
      [&] { retried = scheduler_->SubmitJob(SpecBuilder("first").Build(), "req-1"); });
  // Job numbers are taken under the lock, before the store answers.
  AwaitQueued(kMore);
  gated_->Open();
  submitter.join();
  for (std::thread& thread : submitters) thread.join();

  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->id(), "job-1");
  ASSERT_THAT(retried, IsOk());
  EXPECT_EQ(retried->id(), "job-1");  // the retry waited for the first
  std::set<std::string> ids = {first->id()};
  for (const absl::StatusOr<v1::Job>& job : more) {
    ASSERT_THAT(job, IsOk());
    ids.insert(job->id());
    EXPECT_THAT(StoredJob(job->id()), IsOk());
  }
  EXPECT_EQ(ids.size(), kMore + 1);
  EXPECT_THAT(scheduler_->ListJobs({}), SizeIs(kMore + 1));
  // The held commit, then the eight queued behind it in one.
  EXPECT_THAT(gated_->commit_sizes(), ElementsAre(1, kMore));
}

// Submissions are answered from their write's completion: SubmitJobAsync
// returns at once, a submission with a request id already on its way waits
// for that one's outcome and is answered from it without a write of its
// own, and after a refused first one it is submitted anew.
TEST_F(GroupCommitTest, AsyncSubmissionsAreAnsweredByTheirCommit) {
  struct Answer {
    absl::Notification done;
    absl::StatusOr<v1::Job> job = absl::UnknownError("not answered");
    Scheduler::SubmitCallback Callback() {
      return [this](absl::StatusOr<v1::Job> answer) {
        job = std::move(answer);
        done.Notify();
      };
    }
  };
  gated_->Close();
  Answer first, duplicate;
  scheduler_->SubmitJobAsync(SpecBuilder("a").Build(), "req-a", first.Callback());
  scheduler_->SubmitJobAsync(SpecBuilder("a").Build(), "req-a", duplicate.Callback());
  gated_->AwaitArrived(1);
  EXPECT_FALSE(first.done.HasBeenNotified());
  EXPECT_FALSE(duplicate.done.HasBeenNotified());
  gated_->Open();
  first.done.WaitForNotification();
  duplicate.done.WaitForNotification();
  ASSERT_THAT(first.job, IsOk());
  ASSERT_THAT(duplicate.job, IsOk());
  EXPECT_EQ(duplicate.job->id(), first.job->id());
  EXPECT_EQ(gated_->arrived(), 1);
  EXPECT_THAT(scheduler_->SubmitJob(SpecBuilder("b").Build(), "req-a"),
              StatusIs(absl::StatusCode::kAlreadyExists, "from a different spec"));

  gated_->Close();
  Answer refused, resubmitted;
  scheduler_->SubmitJobAsync(SpecBuilder("c").Build(), "req-c", refused.Callback());
  scheduler_->SubmitJobAsync(SpecBuilder("c").Build(), "req-c", resubmitted.Callback());
  gated_->AwaitArrived(2);
  gated_->FailWrites(absl::UnavailableError("disk gone"));
  gated_->Open();
  refused.done.WaitForNotification();
  resubmitted.done.WaitForNotification();
  EXPECT_THAT(refused.job, StatusIs(absl::StatusCode::kUnavailable, "disk gone"));
  // Its own write, refused too.
  EXPECT_THAT(resubmitted.job, StatusIs(absl::StatusCode::kUnavailable, "disk gone"));
  EXPECT_EQ(gated_->arrived(), 3);
  gated_->FailWrites(absl::OkStatus());
  absl::StatusOr<v1::Job> again = scheduler_->SubmitJob(SpecBuilder("c").Build(), "req-c");
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(StoredJob(again->id()), IsOk());
  // The refused submissions' numbers are not handed out again.
  EXPECT_EQ(again->id(), "job-4");
}

// A store that refuses the commit refuses every submission in it: nothing
// of them is kept, and what may have landed is deleted once the store is
// back.
TEST_F(GroupCommitTest, RefusedCommitRefusesEverySubmissionInItAndKeepsNothing) {
  gated_->Close();
  gated_->FailWrites(absl::UnavailableError("fsync: input/output error"));
  constexpr int kSubmitters = 4;
  std::vector<absl::StatusOr<v1::Job>> results(kSubmitters, absl::UnknownError(""));
  std::vector<std::thread> submitters;
  for (int i = 0; i < kSubmitters; ++i) {
    submitters.emplace_back([&, i] { results[i] = scheduler_->SubmitJob(SpecBuilder().Build()); });
  }
  AwaitEnqueued(kSubmitters);
  gated_->Open();
  for (std::thread& thread : submitters) thread.join();
  for (const absl::StatusOr<v1::Job>& result : results) {
    EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, "input/output error"));
  }
  EXPECT_THAT(scheduler_->ListJobs({}), IsEmpty());
  EXPECT_EQ(scheduler_->GetStoreHealth().last_error.code(), absl::StatusCode::kUnavailable);

  // Back: the refused jobs are deleted (one write asks first, then the
  // rest), and numbering goes on above them.
  gated_->FailWrites(absl::OkStatus());
  for (int tick = 0; tick < 3; ++tick) {
    scheduler_->Tick();
    scheduler_->AwaitStoreWrites();
  }
  EXPECT_THAT(store_->List("jobs/").value_or(std::vector<std::pair<std::string, std::string>>{
                  {"x", "x"}}),
              IsEmpty());
  EXPECT_THAT(scheduler_->GetStoreHealth().last_error, IsOk());
  EXPECT_EQ(scheduler_->GetStoreHealth().unstored_jobs, 0);
  EXPECT_EQ(Submit(SpecBuilder().Build()), absl::StrCat("job-", kSubmitters + 1));
}

// A placement's StartTask goes out only once the store has the placement;
// the tick that placed it does not wait for the store.
TEST_F(GroupCommitTest, PlacementIsStartedOnlyOnceStored) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  gated_->Close();
  const int before = gated_->arrived();
  scheduler_->Tick();  // returns with the placement's commit held
  gated_->AwaitArrived(before + 1);
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(StoredJob(id)->state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 0);  // held for it meanwhile

  gated_->Open();
  scheduler_->AwaitStoreWrites();
  const auto starts = link.Of(v1::SchedulerCommand::kStartTask);
  ASSERT_THAT(starts, SizeIs(1));
  EXPECT_EQ(starts[0].start_task().task_id(), "job-1.r0.a1");
  absl::StatusOr<v1::Job> stored = StoredJob(id);
  ASSERT_THAT(stored, IsOk());
  ASSERT_THAT(stored->tasks(), SizeIs(1));
  EXPECT_EQ(stored->tasks(0).state(), v1::TASK_STATE_STARTING);
  EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_RUNNING);
}

// The agent re-registers while the placement is being stored: the task is
// not lost (the agent cannot know it yet); its StartTask goes to the new
// stream.
TEST_F(GroupCommitTest, AgentRegisteringWhileAPlacementIsStoredDoesNotLoseIt) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  gated_->Close();
  const int before = gated_->arrived();
  scheduler_->Tick();
  gated_->AwaitArrived(before + 1);
  FakeAgentLink again;
  ASSERT_THAT(Register(again, RegisterBuilder("gpu-a").Gpus(1, "V100").Build()), IsOk());
  gated_->Open();
  scheduler_->AwaitStoreWrites();
  EXPECT_THAT(again.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  const v1::Job job = LookUpJob(id);
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_STARTING);
  EXPECT_EQ(job.retries(), 0);
}

// Cancelled while its placement is being stored: nothing is started, and
// the job ends as cancelled once the write is done.
TEST_F(GroupCommitTest, CancelWhileThePlacementIsStoredStartsNothing) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  gated_->Close();
  const int before = gated_->arrived();
  scheduler_->Tick();
  gated_->AwaitArrived(before + 1);
  // The cancel is answered once stored: after the placement's commit.
  absl::StatusOr<v1::Job> cancelled = absl::UnknownError("not answered");
  std::thread canceller([&] { cancelled = scheduler_->CancelJob(id, ""); });
  AwaitQueued(1);
  gated_->Open();
  canceller.join();
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_TRUE(cancelled->cancel_requested());
  scheduler_->AwaitStoreWrites();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  const v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED) << job.message();
  ASSERT_THAT(job.tasks(), SizeIs(1));
  EXPECT_EQ(job.tasks(0).state(), v1::TASK_STATE_KILLED);
  EXPECT_THAT(job.tasks(0).message(), HasSubstr("not started: the job was cancelled"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 1);
  EXPECT_EQ(StoredJob(id)->state(), v1::JOB_STATE_CANCELLED);
}

// The placement's write fails: nothing is started, the placement is undone,
// and nothing is placed while the store refuses writes. Once it takes them
// again, the job's state is written again and the job placed and started.
TEST_F(GroupCommitTest, RefusedPlacementIsUndoneAndPlacedAgainOnceTheStoreIsBack) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  gated_->Close();
  gated_->FailWrites(absl::UnavailableError("etcd: connection refused"));
  const int before = gated_->arrived();
  scheduler_->Tick();
  gated_->AwaitArrived(before + 1);
  gated_->Open();
  scheduler_->AwaitStoreWrites();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.attempts(), 0);
  EXPECT_THAT(job.tasks(), IsEmpty());
  EXPECT_THAT(job.message(), HasSubstr("not started: the store refused the write"));
  EXPECT_EQ(LookUpNode("gpu-a").free_gpus(), 1);
  EXPECT_EQ(scheduler_->GetStoreHealth().unstored_jobs, 1);

  // Still refusing: ticks ask, nothing is placed.
  for (int tick = 0; tick < 2; ++tick) {
    AdvanceAlive(link, absl::Seconds(3));
    scheduler_->Tick();
    scheduler_->AwaitStoreWrites();
  }
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), IsEmpty());
  EXPECT_EQ(LookUpJob(id).attempts(), 0);

  gated_->FailWrites(absl::OkStatus());
  for (int tick = 0; tick < 3 && link.Of(v1::SchedulerCommand::kStartTask).empty(); ++tick) {
    AdvanceAlive(link, absl::Seconds(3));
    scheduler_->Tick();
    scheduler_->AwaitStoreWrites();
  }
  ASSERT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.attempts(), 1);
  absl::StatusOr<v1::Job> stored = StoredJob(id);
  ASSERT_THAT(stored, IsOk());
  ASSERT_THAT(stored->tasks(), SizeIs(1));
  EXPECT_EQ(stored->tasks(0).state(), v1::TASK_STATE_STARTING);
  EXPECT_THAT(scheduler_->GetStoreHealth().last_error, IsOk());
  EXPECT_EQ(scheduler_->GetStoreHealth().unstored_jobs, 0);
}

// A job changed while the store refuses writes is written again, in its
// latest state, once the store is back.
TEST_F(GroupCommitTest, ChangesTheStoreRefusedAreWrittenAgainOnceItIsBack) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  scheduler_->AwaitStoreWrites();
  ASSERT_THAT(Started(link, "job-1.r0.a1", 10), IsOk());
  scheduler_->AwaitStoreWrites();
  gated_->FailWrites(absl::UnavailableError("etcd: connection refused"));
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0, Joules(50)), IsOk());
  scheduler_->AwaitStoreWrites();
  EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(StoredJob(id)->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(scheduler_->GetStoreHealth().unstored_jobs, 1);

  gated_->FailWrites(absl::OkStatus());
  scheduler_->Tick();
  scheduler_->AwaitStoreWrites();
  EXPECT_EQ(StoredJob(id)->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(StoredJob(id)->energy().total_j(), 50);
  EXPECT_EQ(scheduler_->GetStoreHealth().unstored_jobs, 0);
  EXPECT_THAT(scheduler_->GetStoreHealth().last_error, IsOk());
}

// An agent forgets a final task event once it is acknowledged: the
// acknowledgement waits until the store has the task's end. Not stored, it
// is not acknowledged, and the agent's resent event is, once it is.
TEST_F(GroupCommitTest, TaskEndIsAcknowledgedOnlyOnceStored) {
  FakeAgentLink link;
  const std::string id = NodeAndJob(link, SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  scheduler_->AwaitStoreWrites();
  ASSERT_THAT(Started(link, "job-1.r0.a1", 10), IsOk());
  scheduler_->AwaitStoreWrites();

  gated_->Close();
  const int before = gated_->arrived();
  ASSERT_THAT(Exited(link, "job-1.r0.a1", 0, Joules(50)), IsOk());
  gated_->AwaitArrived(before + 1);
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kAckTaskEvent), IsEmpty());
  gated_->Open();
  scheduler_->AwaitStoreWrites();
  ASSERT_THAT(link.Of(v1::SchedulerCommand::kAckTaskEvent), SizeIs(1));
  EXPECT_EQ(StoredJob(id)->state(), v1::JOB_STATE_SUCCEEDED);

  // Refused: no acknowledgement until the store has it and the agent, once
  // registered again, sends the event again.
  const std::string second = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  scheduler_->AwaitStoreWrites();
  ASSERT_THAT(Started(link, "job-2.r0.a1", 11), IsOk());
  scheduler_->AwaitStoreWrites();
  gated_->FailWrites(absl::UnavailableError("etcd: connection refused"));
  ASSERT_THAT(Exited(link, "job-2.r0.a1", 0, Joules(30)), IsOk());
  scheduler_->AwaitStoreWrites();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kAckTaskEvent), SizeIs(1));
  gated_->FailWrites(absl::OkStatus());
  scheduler_->Tick();
  scheduler_->AwaitStoreWrites();
  EXPECT_EQ(StoredJob(second)->state(), v1::JOB_STATE_SUCCEEDED);
  FakeAgentLink again;
  v1::Register reg = RegisterBuilder("gpu-a").Gpus(1, "V100").Build();
  *reg.add_unacked_events() = ExitedEvent("job-2.r0.a1", 0, Joules(30));
  ASSERT_THAT(Register(again, reg), IsOk());
  scheduler_->AwaitStoreWrites();
  const auto acks = again.Of(v1::SchedulerCommand::kAckTaskEvent);
  ASSERT_THAT(acks, SizeIs(1));
  EXPECT_EQ(acks[0].ack_task_event().task_id(), "job-2.r0.a1");
  EXPECT_EQ(LookUpJob(second).state(), v1::JOB_STATE_SUCCEEDED);
}

// A hot standby hands over its watched copy: the new scheduler loads it,
// and writes to the store.
TEST_F(SchedulerTest, CreateLoadsInitialStateAndWritesToTheStore) {
  std::string path = ::testing::TempDir() + "/standby_copy_XXXXXX";
  ASSERT_NE(mkdtemp(path.data()), nullptr) << std::strerror(errno);
  absl::StatusOr<std::unique_ptr<LocalStore>> copy = LocalStore::Open(path);
  ASSERT_THAT(copy, IsOk());
  {
    absl::StatusOr<std::unique_ptr<Scheduler>> writer =
        Scheduler::Create(copy->get(), &clock_, options_);
    ASSERT_THAT(writer, IsOk());
    ASSERT_THAT((*writer)->SubmitJob(SpecBuilder("handed-over").Build()), IsOk());
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> listed =
      store_->List("jobs/");
  ASSERT_THAT(listed, IsOk());
  ASSERT_THAT(*listed, IsEmpty());

  scheduler_.reset();
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(store_.get(), &clock_, options_, copy->get());
  ASSERT_THAT(scheduler, IsOk());
  scheduler_ = *std::move(scheduler);
  EXPECT_EQ(LookUpJob("job-1").spec().name(), "handed-over");
  EXPECT_EQ(LookUpJob("job-1").state(), v1::JOB_STATE_PENDING);

  // Numbering continues from the copy; writes go to the store only.
  EXPECT_EQ(Submit(SpecBuilder("new").Build()), "job-2");
  EXPECT_THAT(store_->Get("jobs/job-2"), IsOk());
  EXPECT_THAT((*copy)->Get("jobs/job-2"), StatusIs(absl::StatusCode::kNotFound, ""));
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("cpu-a").Cpus(8).Build()), IsOk());
  scheduler_->Tick();
  EXPECT_THAT(link.Of(v1::SchedulerCommand::kStartTask), SizeIs(2));
  absl::StatusOr<std::string> stored = store_->Get("jobs/job-1");
  ASSERT_THAT(stored, IsOk());
  v1::Job job;
  ASSERT_TRUE(job.ParseFromString(*stored));
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
}

// ---- Carbon and cost ----

// Two nodes in different grid regions: eu-north at a constant 45 g/kWh,
// us-east from a time series that changes while the job runs.
class CarbonAccountingTest : public SchedulerTest {
 protected:
  CarbonAccountingTest() {
    std::string dir = ::testing::TempDir() + "/carbon_accounting_XXXXXX";
    EXPECT_NE(mkdtemp(dir.data()), nullptr) << std::strerror(errno);
    // 300 g/kWh until 300 s after the test's start, then 500.
    const int64_t start_s = absl::ToUnixSeconds(clock_.Now());
    std::ofstream(dir + "/us-east.csv")
        << "time,g_per_kwh\n"
        << start_s - 3600 << ",300\n"
        << start_s + 300 << ",500\n";
    absl::StatusOr<CarbonConfig> carbon = CarbonConfig::Parse(
        "default: {intensity_g_per_kwh: 400, price_per_kwh: 0.15}\n"
        "regions:\n"
        "  eu-north: {intensity_g_per_kwh: 45, price_per_kwh: 0.08}\n"
        "  us-east: {intensity_file: us-east.csv, price_per_kwh: 0.12}\n",
        "carbon.yaml", dir);
    EXPECT_THAT(carbon.status(), IsOk());
    if (carbon.ok()) options_.carbon = *carbon;
  }
};

TEST_F(CarbonAccountingTest, EachEnergyIncreaseIsPricedAtItsRegionsIntensityThen) {
  FakeAgentLink a, b;
  ASSERT_THAT(Register(a, RegisterBuilder("node-a").Gpus(1, "V100")
                              .Label("joule.dev/region", "eu-north").Build()),
              IsOk());
  ASSERT_THAT(Register(b, RegisterBuilder("node-b").Gpus(1, "V100")
                              .Label("joule.dev/region", "us-east").Build()),
              IsOk());
  const std::string job_id = Submit(SpecBuilder().Gpus(1).Replicas(2).Build());
  EXPECT_EQ(LookUpJob(job_id).footprint().currency(), "USD");
  scheduler_->Tick();
  v1::Job job = LookUpJob(job_id);
  ASSERT_EQ(job.tasks_size(), 2);
  const bool first_on_a = job.tasks(0).node() == "node-a";
  const std::string on_a = job.tasks(first_on_a ? 0 : 1).task_id();
  const std::string on_b = job.tasks(first_on_a ? 1 : 0).task_id();
  ASSERT_THAT(Started(a, on_a, 1), IsOk());
  ASSERT_THAT(Started(b, on_b, 2), IsOk());

  // Cumulative joules per report: node-a 36 kJ, 72 kJ, then 90 kJ at exit;
  // node-b 72 kJ (at 300 g/kWh), then 180 kJ and 216 kJ (at 500 g/kWh).
  // (Over minutes: what one V100 node can draw.)
  clock_.Advance(absl::Seconds(100));
  ASSERT_THAT(Telemetry(a, on_a, Joules(30000, 4000, 2000)), IsOk());
  ASSERT_THAT(Telemetry(b, on_b, Joules(60000, 8000, 4000)), IsOk());
  clock_.Advance(absl::Seconds(300));  // Past the series' change.
  ASSERT_THAT(Telemetry(a, on_a, Joules(60000, 8000, 4000)), IsOk());
  ASSERT_THAT(Telemetry(b, on_b, Joules(150000, 20000, 10000)), IsOk());
  clock_.Advance(absl::Seconds(100));
  ASSERT_THAT(Exited(a, on_a, 0, Joules(75000, 10000, 5000)), IsOk());
  ASSERT_THAT(Exited(b, on_b, 0, Joules(180000, 24000, 12000)), IsOk());

  job = LookUpJob(job_id);
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  const double kwh = 1 / 3.6e6;
  const double expected_g = 90000 * kwh * 45 +                               // node-a
                            72000 * kwh * 300 + (108000 + 36000) * kwh * 500;  // node-b
  const double expected_cost = 90000 * kwh * 0.08 + 216000 * kwh * 0.12;
  EXPECT_DOUBLE_EQ(expected_g, 27.125);
  EXPECT_NEAR(job.footprint().co2e_g(), expected_g, 1e-9);
  EXPECT_NEAR(job.footprint().cost(), expected_cost, 1e-12);
  EXPECT_NEAR(job.footprint().kwh(), job.energy().total_j() * kwh, 1e-12);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 306000);
  EXPECT_EQ(job.footprint().currency(), "USD");
  EXPECT_EQ(job.footprint().unpriced_kwh(), 0);

  // The sums since start agree; the footprint is stored with the job.
  const MetricsSnapshot metrics = scheduler_->Metrics(absl::Hours(1));
  EXPECT_NEAR(metrics.co2e_g, expected_g, 1e-9);
  EXPECT_NEAR(metrics.cost, expected_cost, 1e-12);
  EXPECT_DOUBLE_EQ(metrics.energy_j, 306000);
  EXPECT_EQ(metrics.currency, "USD");
  Restart();
  EXPECT_NEAR(LookUpJob(job_id).footprint().co2e_g(), expected_g, 1e-9);
  EXPECT_NEAR(LookUpJob(job_id).footprint().cost(), expected_cost, 1e-12);
}

TEST_F(CarbonAccountingTest, NodeWithoutARegionGetsTheDefault) {
  FakeAgentLink link;
  const std::string job_id = RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  clock_.Advance(absl::Hours(1));  // 1 kWh takes one V100 node that long.
  ASSERT_THAT(Exited(link, absl::StrCat(job_id, ".r0.a1"), 0, Joules(3.6e6)), IsOk());
  const v1::Job job = LookUpJob(job_id);
  EXPECT_DOUBLE_EQ(job.footprint().kwh(), 1);
  EXPECT_DOUBLE_EQ(job.footprint().co2e_g(), 400);
  EXPECT_DOUBLE_EQ(job.footprint().cost(), 0.15);
}

// Without --carbon-config: kWh still add up; emissions and cost stay 0, and
// the footprint says it was not configured (no currency).
TEST_F(SchedulerTest, FootprintWithoutCarbonConfigCountsOnlyKwh) {
  FakeAgentLink link;
  const std::string job_id = RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  ASSERT_TRUE(LookUpJob(job_id).has_footprint());
  // 1 kWh over an hour: what one V100 node can draw.
  clock_.Advance(absl::Minutes(30));
  ASSERT_THAT(Telemetry(link, absl::StrCat(job_id, ".r0.a1"), Joules(1.8e6)), IsOk());
  clock_.Advance(absl::Minutes(30));
  ASSERT_THAT(Exited(link, absl::StrCat(job_id, ".r0.a1"), 0, Joules(3.6e6)), IsOk());
  const v1::Job job = LookUpJob(job_id);
  EXPECT_DOUBLE_EQ(job.footprint().kwh(), 1);
  EXPECT_DOUBLE_EQ(job.footprint().unpriced_kwh(), 1);
  EXPECT_EQ(job.footprint().co2e_g(), 0);
  EXPECT_EQ(job.footprint().cost(), 0);
  EXPECT_EQ(job.footprint().currency(), "");
  EXPECT_EQ(scheduler_->Metrics(absl::Hours(1)).currency, "");
}

// ---- Impossible telemetry (scheduler/telemetry_guard.h) ----

// Counts the observer's dropped-telemetry calls. Thread-safe; guarded by mu_.
class RejectionRecorder : public SchedulerObserver {
 public:
  void OnPlacementCycle(absl::Duration) override {}
  void OnFirstPlacement(absl::Duration) override {}
  void OnCapSent(absl::string_view) override {}
  void OnTelemetryRejected(absl::string_view node, absl::string_view reason) override {
    absl::MutexLock lock(&mu_);
    ++counts_[{std::string(node), std::string(reason)}];
  }
  std::map<std::pair<std::string, std::string>, int> Counts() const {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, int> counts_ ABSL_GUARDED_BY(mu_);
};

class ImpossibleTelemetryTest : public SchedulerTest {
 protected:
  ImpossibleTelemetryTest() { options_.observer = &rejections_; }
  void TearDown() override { scheduler_.reset(); }

  // A sample from gpu-a's one V100 (limit 250 W: ceiling 500 W) with the
  // task's cumulative usage.
  absl::Status Sample(FakeAgentLink& link, const std::string& task_id, double gpu_power_w,
                      double gpu_energy_j, const v1::Energy& task_energy,
                      const std::function<void(v1::NodeSample*)>& mutate = nullptr) {
    v1::AgentMessage message;
    v1::NodeSample* sample = message.mutable_telemetry();
    *sample->mutable_time() = ToProtoTime(clock_.Now());
    v1::DeviceSample* gpu = sample->add_devices();
    gpu->set_kind(v1::DEVICE_KIND_GPU);
    gpu->set_index(0);
    gpu->set_power_w(gpu_power_w);
    gpu->set_energy_j(gpu_energy_j);
    gpu->set_temp_c(60);
    gpu->set_utilization(0.9);
    gpu->set_power_cap_w(250);
    sample->set_node_power_w(400);
    v1::TaskUsage* usage = sample->add_tasks();
    usage->set_task_id(task_id);
    *usage->mutable_energy() = task_energy;
    usage->set_steps_done(12);
    if (mutate) mutate(sample);
    return scheduler_->OnAgentMessage(&link, message);
  }

  RejectionRecorder rejections_;
};

TEST_F(ImpossibleTelemetryTest, NeverReachesAJobsEnergyAndIsCounted) {
  FakeAgentLink link;
  const std::string job_id = RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  const std::string task_id = absl::StrCat(job_id, ".r0.a1");
  clock_.Advance(absl::Seconds(10));
  ASSERT_THAT(Sample(link, task_id, 200, 1e6, Joules(1000)), IsOk());
  ASSERT_DOUBLE_EQ(LookUpJob(job_id).energy().total_j(), 1000);
  EXPECT_THAT(rejections_.Counts(), IsEmpty());

  // Whole samples that are impossible, each claiming plausible task energy
  // that must not count either.
  clock_.Advance(absl::Seconds(1));
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  const double kInf = std::numeric_limits<double>::infinity();
  ASSERT_THAT(Sample(link, task_id, 1e12, 1e6, Joules(5000),
                     [](v1::NodeSample* s) { s->set_node_power_w(1e12); }),
              IsOk());
  ASSERT_THAT(Sample(link, task_id, kNaN, 1e6, Joules(5000)), IsOk());
  ASSERT_THAT(Sample(link, task_id, 200, 1e6, Joules(5000),
                     [&](v1::NodeSample* s) { s->mutable_devices(0)->set_temp_c(kInf); }),
              IsOk());
  ASSERT_THAT(Sample(link, task_id, 200, 1e6, Joules(5000),
                     [&](v1::NodeSample* s) { s->set_node_power_w(kInf); }),
              IsOk());
  // The GPU's counter goes back, far from a restart near zero.
  ASSERT_THAT(Sample(link, task_id, 200, 5e5, Joules(5000)), IsOk());
  // Plausible samples whose task energy is not: only the energy is dropped.
  ASSERT_THAT(Sample(link, task_id, 200, 1e6 + 200, Joules(1e12)), IsOk());
  ASSERT_THAT(Sample(link, task_id, 200, 1e6 + 400, Joules(kNaN)), IsOk());
  ASSERT_THAT(Sample(link, task_id, 200, 1e6 + 600, Joules(500)), IsOk());

  v1::Job job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_DOUBLE_EQ(job.tasks(0).energy().total_j(), 1000);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 1000);
  EXPECT_DOUBLE_EQ(job.footprint().kwh(), 1000 / 3.6e6);
  MetricsSnapshot metrics = scheduler_->Metrics(absl::Hours(1));
  EXPECT_DOUBLE_EQ(metrics.energy_j, 1000);
  ASSERT_THAT(metrics.nodes, SizeIs(1));
  EXPECT_DOUBLE_EQ(metrics.nodes[0].power_w, 400);
  EXPECT_DOUBLE_EQ(LookUpNode("gpu-a").last_sample().devices(0).power_w(), 200);
  using Key = std::pair<std::string, std::string>;
  EXPECT_EQ(rejections_.Counts(), (std::map<Key, int>{
                                      {{"gpu-a", "power_above_max"}, 1},
                                      {{"gpu-a", "not_finite"}, 4},
                                      {{"gpu-a", "energy_backwards"}, 2},
                                      {{"gpu-a", "energy_above_max"}, 1},
                                  }));

  // Good telemetry still counts, and an impossible final report does not.
  clock_.Advance(absl::Seconds(1));
  ASSERT_THAT(Sample(link, task_id, 220, 1e6 + 800, Joules(3000)), IsOk());
  EXPECT_DOUBLE_EQ(LookUpJob(job_id).energy().total_j(), 3000);
  ASSERT_THAT(Exited(link, task_id, 0, Joules(1e12)), IsOk());
  job = LookUpJob(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(job.energy().total_j(), 3000);
  EXPECT_DOUBLE_EQ(scheduler_->Metrics(absl::Hours(1)).energy_j, 3000);
  EXPECT_EQ(rejections_.Counts().at({"gpu-a", "energy_above_max"}), 2);
}

TEST_F(ImpossibleTelemetryTest, AnAgentThatStartedAgainCountsFromZero) {
  FakeAgentLink link;
  const std::string job_id = RunOneJob(link, "gpu-a", 1, SpecBuilder().Gpus(1).Build());
  const std::string task_id = absl::StrCat(job_id, ".r0.a1");
  clock_.Advance(absl::Seconds(10));
  ASSERT_THAT(Sample(link, task_id, 200, 1e6, Joules(1000)), IsOk());
  // The counter restarts near zero: a new baseline, not a rejection.
  clock_.Advance(absl::Seconds(1));
  ASSERT_THAT(Sample(link, task_id, 200, 150, Joules(1200)), IsOk());
  EXPECT_DOUBLE_EQ(LookUpJob(job_id).energy().total_j(), 1200);
  // So does a registration (the agent process started again).
  clock_.Advance(absl::Seconds(1));
  FakeAgentLink again;
  ASSERT_THAT(Register(again, RegisterBuilder("gpu-a").Gpus(1, "V100")
                                  .Running(task_id, 1000, 1300).Build()),
              IsOk());
  ASSERT_THAT(Sample(again, task_id, 200, 10, Joules(1400)), IsOk());
  EXPECT_DOUBLE_EQ(LookUpJob(job_id).energy().total_j(), 1400);
  EXPECT_THAT(rejections_.Counts(), IsEmpty());
}

// ---- Idle power management ----

// Records the suspend and resume commands. Thread-safe.
class FakePowerControl : public NodePowerControl {
 public:
  void Suspend(const std::string& node) override {
    absl::MutexLock lock(&mu_);
    suspended_.push_back(node);
  }
  void Resume(const std::string& node) override {
    absl::MutexLock lock(&mu_);
    resumed_.push_back(node);
  }
  std::vector<std::string> suspended() const {
    absl::MutexLock lock(&mu_);
    return suspended_;
  }
  std::vector<std::string> resumed() const {
    absl::MutexLock lock(&mu_);
    return resumed_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> suspended_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resumed_ ABSL_GUARDED_BY(mu_);
};

class NodePowerTest : public SchedulerTest {
 protected:
  void SetUp() override {
    SchedulerTest::SetUp();
    options_.node_power.suspend_after = absl::Minutes(10);
    options_.node_power.resume_timeout = absl::Minutes(5);
    options_.power_control = &power_;
    // Agents are silent in these tests; heartbeats are not what is tested.
    options_.heartbeat_timeout = absl::Hours(10);
    options_.telemetry_freshness = absl::Hours(10);
    scheduler_ = NewScheduler();
  }

  FakePowerControl power_;
};

TEST_F(NodePowerTest, SuspendsIdleNodesButNeverABusyOne) {
  FakeAgentLink busy, idle;
  ASSERT_THAT(Register(busy, RegisterBuilder("busy").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(Register(idle, RegisterBuilder("idle").Gpus(1, "V100").Build()), IsOk());
  const std::string id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  const v1::Job job = LookUpJob(id);
  ASSERT_EQ(job.tasks_size(), 1);
  ASSERT_EQ(job.tasks(0).node(), "busy");
  ASSERT_THAT(Started(busy, job.tasks(0).task_id(), 10), IsOk());

  clock_.Advance(absl::Minutes(9));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), IsEmpty());
  clock_.Advance(absl::Hours(2));
  scheduler_->Tick();
  scheduler_->Tick();
  // The busy node runs a task for hours and is never suspended.
  EXPECT_THAT(power_.suspended(), ElementsAre("idle"));
  EXPECT_EQ(LookUpNode("idle").state(), v1::NODE_STATE_SUSPENDED);
  EXPECT_EQ(LookUpNode("busy").state(), v1::NODE_STATE_READY);
  // Its agent says it is going down: expected, not a failure.
  v1::AgentMessage going_down;
  going_down.mutable_going_down()->set_reason("suspend");
  ASSERT_THAT(scheduler_->OnAgentMessage(&idle, going_down), IsOk());
  scheduler_->OnAgentDisconnect(&idle);
  EXPECT_EQ(LookUpNode("idle").state(), v1::NODE_STATE_SUSPENDED);
  EXPECT_THAT(LookUpNode("idle").message(), HasSubstr("suspended"));

  // The busy node's task ends: its idle clock starts then.
  ASSERT_THAT(Exited(busy, job.tasks(0).task_id(), 0), IsOk());
  clock_.Advance(absl::Minutes(9));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), ElementsAre("idle"));
  clock_.Advance(absl::Minutes(1));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), ElementsAre("idle", "busy"));
}

// A node whose GPUs a Kubernetes pod holds is in use, though Joule runs
// nothing there: never suspended while the pod holds them, and idle only
// from when it lets go.
TEST_F(NodePowerTest, NodeWithAPodHoldingItsGpuIsNotSuspended) {
  FakeAgentLink link;
  ASSERT_THAT(Register(link, RegisterBuilder("k8s").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(scheduler_->OnAgentMessage(
                  &link, PodHeldSample(clock_.Now(), 1, {{0, "team-a/notebook"}})),
              IsOk());
  clock_.Advance(absl::Hours(2));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), IsEmpty());
  EXPECT_EQ(LookUpNode("k8s").state(), v1::NODE_STATE_READY);

  ASSERT_THAT(scheduler_->OnAgentMessage(&link, PodHeldSample(clock_.Now(), 1, {})), IsOk());
  clock_.Advance(absl::Minutes(9));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), IsEmpty());
  clock_.Advance(absl::Minutes(1));
  scheduler_->Tick();
  EXPECT_THAT(power_.suspended(), ElementsAre("k8s"));
}

TEST_F(NodePowerTest, ResumesForWorkAndANodeThatDoesNotComeBackIsMarkedDown) {
  FakeAgentLink a, b;
  ASSERT_THAT(Register(a, RegisterBuilder("a").Gpus(1, "V100").Build()), IsOk());
  ASSERT_THAT(Register(b, RegisterBuilder("b").Gpus(1, "V100").Build()), IsOk());
  clock_.Advance(absl::Minutes(10));
  scheduler_->Tick();
  ASSERT_THAT(power_.suspended(), ElementsAre("a", "b"));
  scheduler_->OnAgentDisconnect(&a);
  scheduler_->OnAgentDisconnect(&b);

  // Work arrives: one node is woken, not both, and the job waits for it.
  const std::string id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  scheduler_->Tick();
  EXPECT_THAT(power_.resumed(), ElementsAre("a"));
  EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(LookUpJob(id).message(), HasSubstr("waiting for suspended node(s) a to resume"));

  // a never registers: after the resume timeout it is down, and the job's
  // work goes to b instead.
  clock_.Advance(absl::Minutes(5));
  scheduler_->Tick();
  EXPECT_EQ(LookUpNode("a").state(), v1::NODE_STATE_DOWN);
  EXPECT_THAT(LookUpNode("a").message(), HasSubstr("did not resume within 5m"));
  scheduler_->Tick();
  EXPECT_THAT(power_.resumed(), ElementsAre("a", "b"));
  FakeAgentLink b_again;
  ASSERT_THAT(Register(b_again, RegisterBuilder("b").Gpus(1, "V100").Build()), IsOk());
  scheduler_->Tick();
  const v1::Job job = LookUpJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(job.tasks_size(), 1);
  EXPECT_EQ(job.tasks(0).node(), "b");
  EXPECT_THAT(b_again.Of(v1::SchedulerCommand::kStartTask), SizeIs(1));
  EXPECT_EQ(LookUpNode("b").state(), v1::NODE_STATE_READY);
}

TEST_F(NodePowerTest, ARestartedSchedulerStillKnowsSuspendedNodes) {
  FakeAgentLink a;
  ASSERT_THAT(Register(a, RegisterBuilder("a").Gpus(1, "V100").Build()), IsOk());
  clock_.Advance(absl::Minutes(10));
  scheduler_->Tick();
  ASSERT_THAT(power_.suspended(), ElementsAre("a"));
  scheduler_->OnAgentDisconnect(&a);
  Restart();
  EXPECT_EQ(LookUpNode("a").state(), v1::NODE_STATE_SUSPENDED);
  // Work for it wakes it, as before the restart.
  const std::string id = Submit(SpecBuilder().Gpus(1).Build());
  scheduler_->Tick();
  EXPECT_THAT(power_.resumed(), ElementsAre("a"));
  FakeAgentLink again;
  ASSERT_THAT(Register(again, RegisterBuilder("a").Gpus(1, "V100").Build()), IsOk());
  scheduler_->Tick();
  EXPECT_EQ(LookUpJob(id).state(), v1::JOB_STATE_RUNNING);
  // Awake again: a later restart does not think it is asleep.
  Restart();
  EXPECT_NE(LookUpNode("a").state(), v1::NODE_STATE_SUSPENDED);
}

TEST_F(NodePowerTest, AnAgentGoingDownUnexpectedlyIsDownAtOnce) {
  FakeAgentLink a;
  ASSERT_THAT(Register(a, RegisterBuilder("a").Gpus(1, "V100").Build()), IsOk());
  v1::AgentMessage going_down;
  going_down.mutable_going_down()->set_reason("joule-agent stopped by signal 15");
  ASSERT_THAT(scheduler_->OnAgentMessage(&a, going_down), IsOk());
  EXPECT_EQ(LookUpNode("a").state(), v1::NODE_STATE_DOWN);
  EXPECT_THAT(LookUpNode("a").message(), HasSubstr("going down: joule-agent stopped"));
}

}  // namespace
}  // namespace joule
