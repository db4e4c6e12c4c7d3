#include "scheduler/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics_http.h"
#include "common/proto_time.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "scheduler/carbon.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/memory_store.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ---- The text format, read back ----

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the samples of a text-format render (label values without commas
// or escaped quotes, as in these tests).
std::vector<Sample> ParseSamples(const std::string& text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    const size_t space = line.rfind(' ');
    absl::string_view series = line.substr(0, space);
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &sample.value)) << line;
    const size_t brace = series.find('{');
    sample.name = std::string(series.substr(0, brace));
    if (brace != absl::string_view::npos) {
      absl::string_view labels = series.substr(brace + 1, series.size() - brace - 2);
      for (absl::string_view pair : absl::StrSplit(labels, ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        absl::string_view value = pair.substr(eq + 1);
        absl::ConsumePrefix(&value, "\"");
        absl::ConsumeSuffix(&value, "\"");
        sample.labels[std::string(pair.substr(0, eq))] = std::string(value);
      }
    }
    out.push_back(std::move(sample));
  }
  return out;
}

// The samples named `name` whose labels include `labels`.
std::vector<Sample> Find(const std::vector<Sample>& samples, const std::string& name,
                         const std::map<std::string, std::string>& labels = {}) {
  std::vector<Sample> out;
  for (const Sample& sample : samples) {
    if (sample.name != name) continue;
    const bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& label) {
      auto it = sample.labels.find(label.first);
      return it != sample.labels.end() && it->second == label.second;
    });
    if (match) out.push_back(sample);
  }
  return out;
}

double Sum(const std::vector<Sample>& samples) {
  double sum = 0;
  for (const Sample& sample : samples) sum += sample.value;
  return sum;
}

// The one sample named `name` with `labels` (a test failure otherwise).
double Value(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  const std::vector<Sample> found = Find(samples, name, labels);
  EXPECT_EQ(found.size(), 1u) << name;
  return found.empty() ? NAN : found[0].value;
}

// ---- A scheduler on a fake clock with a fake agent ----

// Records what the scheduler sends to one agent. Thread-safe; guarded by mu_.
class FakeAgentLink : public AgentLink {
 public:
  void Send(const v1::SchedulerCommand& command) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(command);
  }
  // The power cap the task runs at: its start command's, then the last
  // SetCap's.
  double CapOf(const std::string& task_id) const {
    absl::MutexLock lock(&mu_);
    double cap = 0;
    for (const v1::SchedulerCommand& command : sent_) {
      if (command.has_start_task() && command.start_task().task_id() == task_id) {
        cap = command.start_task().power_cap_w();
      }
      if (command.has_set_cap()) cap = command.set_cap().power_cap_w();
    }
    return cap;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::SchedulerCommand> sent_ ABSL_GUARDED_BY(mu_);
};

class SchedulerMetricsTest : public ::testing::Test {
 protected:
  static constexpr absl::Duration kRetention = absl::Minutes(10);

  void SetUp() override {
    SchedulerOptions options;
    options.learn_batch_size = false;
    // Fast just-in-time profiling (as in scheduler_test.cc's power tests):
    // 250 W, then 200, 150 and 100 W, then the objective's 200 W.
    options.profiler.step_w = 50;
    options.profiler.warmup = absl::Seconds(1);
    options.profiler.window = absl::Seconds(2);
    options.profiler.max_window = absl::Seconds(10);
    options.profiler.max_explore_slowdown = 10;
    absl::StatusOr<CarbonConfig> carbon = CarbonConfig::Parse(
        "currency: EUR\n"
        "default: {intensity_g_per_kwh: 400, price_per_kwh: 0.15}\n",
        "carbon.yaml", "");
    ASSERT_TRUE(carbon.ok()) << carbon.status();
    options.carbon = *carbon;
    options.observer = &metrics_;
    // Store writes inline: a placement is started (and counted) by the
    // call that made it, so the figures are there when it returns.
    options.store_writes.inline_commits = true;
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(&store_, &clock_, options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = *std::move(scheduler);
    metrics_.SetLeader(true);
  }

  void Register(const std::string& node) {
    v1::Register message;
    message.mutable_node()->set_name(node);
    message.mutable_node()->set_cpus(8);
    message.mutable_node()->set_memory_bytes(int64_t{16} << 30);
    message.mutable_node()->set_static_power_w(60);
    v1::Device* gpu = message.mutable_node()->add_devices();
    gpu->set_kind(v1::DEVICE_KIND_GPU);
    gpu->set_index(0);
    gpu->set_model("V100");
    gpu->set_power_limit_min_w(100);
    gpu->set_power_limit_default_w(250);
    gpu->set_power_limit_max_w(250);
    gpu->set_idle_power_w(35);
    ASSERT_TRUE(scheduler_->OnAgentRegister(&link_, message).ok());
  }

  void Started(const std::string& task_id) {
    v1::AgentMessage message;
    v1::TaskEvent* event = message.mutable_task_event();
    event->set_task_id(task_id);
    event->set_kind(v1::TaskEvent::KIND_STARTED);
    event->set_pid(4242);
    *event->mutable_time() = ToProtoTime(clock_.Now());
    ASSERT_TRUE(scheduler_->OnAgentMessage(&link_, message).ok());
  }

  // One telemetry sample: the node's power and each task's cumulative usage.
  void Telemetry(double node_power_w, const std::vector<v1::TaskUsage>& tasks) {
    v1::AgentMessage message;
    *message.mutable_telemetry()->mutable_time() = ToProtoTime(clock_.Now());
    message.mutable_telemetry()->set_node_power_w(node_power_w);
    for (const v1::TaskUsage& usage : tasks) *message.mutable_telemetry()->add_tasks() = usage;
    ASSERT_TRUE(scheduler_->OnAgentMessage(&link_, message).ok());
  }

  void Exited(const v1::TaskUsage& usage) {
    v1::AgentMessage message;
    v1::TaskEvent* event = message.mutable_task_event();
    event->set_task_id(usage.task_id());
    event->set_kind(v1::TaskEvent::KIND_EXITED);
    *event->mutable_time() = ToProtoTime(clock_.Now());
    *event->mutable_usage() = usage;
    ASSERT_TRUE(scheduler_->OnAgentMessage(&link_, message).ok());
  }

  // The GPU job's usage after running `seconds` more at its current cap
  // (the simulated V100 of agent/devices.h), with CPU and static shares.
  void RunGpuTask(int seconds) {
    for (int i = 0; i < seconds; ++i) {
      const double cap = link_.CapOf(kGpuTask);
      const double power_w = std::min(cap, 35 + 0.9 * 215);
      const double f = std::cbrt((power_w - 35) / (0.9 * 215));
      clock_.Advance(absl::Seconds(1));
      gpu_usage_.set_samples_done(gpu_usage_.samples_done() + 1000 / (0.35 + 0.65 / f));
      v1::Energy* energy = gpu_usage_.mutable_energy();
      energy->set_gpu_j(energy->gpu_j() + power_w);
      energy->set_cpu_j(energy->cpu_j() + 10);
      energy->set_static_j(energy->static_j() + 5);
      energy->set_total_j(energy->gpu_j() + energy->cpu_j() + energy->static_j());
      v1::Energy* cpu = cpu_usage_.mutable_energy();
      cpu->set_cpu_j(cpu->cpu_j() + 20);
      cpu->set_static_j(cpu->static_j() + 5);
      cpu->set_total_j(cpu->cpu_j() + cpu->static_j());
      Telemetry(300 + power_w, {gpu_usage_, cpu_usage_});
    }
  }

  // job-1 (1 GPU, user alice) is profiled, runs and succeeds; job-2 (CPU
  // only, user bob, with a budget it stays well within) keeps running.
  void RunScenario() {
    Register("gpu-a");
    v1::JobSpec gpu_job;
    gpu_job.set_name("train");
    gpu_job.set_command("/usr/bin/train");
    gpu_job.set_user("alice");
    gpu_job.mutable_resources()->set_gpus(1);
    gpu_job.mutable_objective()->set_max_slowdown(1.10);
    ASSERT_TRUE(scheduler_->SubmitJob(gpu_job).ok());
    v1::JobSpec cpu_job;
    cpu_job.set_name("etl");
    cpu_job.set_command("/usr/bin/etl");
    cpu_job.set_user("bob");
    cpu_job.set_energy_budget_j(1e9);
    ASSERT_TRUE(scheduler_->SubmitJob(cpu_job).ok());
    // Both wait 30 s for their first placement.
    clock_.Advance(absl::Seconds(30));
    Telemetry(300, {});
    scheduler_->Tick();
    Started(kGpuTask);
    Started(kCpuTask);
    gpu_usage_.set_task_id(kGpuTask);
    cpu_usage_.set_task_id(kCpuTask);
    RunGpuTask(40);
    Exited(gpu_usage_);
    Telemetry(420, {cpu_usage_});
    // An operator's cap, whatever reason it gives.
    v1::SetCap cap;
    cap.set_kind(v1::DEVICE_KIND_GPU);
    cap.set_index(0);
    cap.set_power_cap_w(150);
    cap.set_reason("maintenance window");
    ASSERT_TRUE(scheduler_->SetNodeCap("gpu-a", cap).ok());
    clock_.Advance(absl::Seconds(7));
    scheduler_->Tick();
  }

  std::vector<Sample> RefreshAndRender() {
    metrics_.Refresh(*scheduler_);
    rendered_ = RenderMetrics(*metrics_.registry());
    return ParseSamples(rendered_);
  }

  v1::Job GetJob(const std::string& id) {
    absl::StatusOr<v1::Job> job = scheduler_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }

  static constexpr char kGpuTask[] = "job-1.r0.a1";
  static constexpr char kCpuTask[] = "job-2.r0.a1";

  FakeClock clock_;
  MemoryStore store_;
  SchedulerMetrics metrics_{kRetention};
  std::unique_ptr<Scheduler> scheduler_;
  FakeAgentLink link_;
  v1::TaskUsage gpu_usage_;
  v1::TaskUsage cpu_usage_;
  std::string rendered_;
};

TEST_F(SchedulerMetricsTest, ExportsTheDocumentedSeries) {
  RunScenario();
  const std::vector<Sample> samples = RefreshAndRender();
  const v1::Job gpu_job = GetJob("job-1");
  const v1::Job cpu_job = GetJob("job-2");
  ASSERT_EQ(gpu_job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(cpu_job.state(), v1::JOB_STATE_RUNNING);

  // Jobs by state, every state present; the queue.
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "pending"}}), 0);
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "running"}}), 1);
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "succeeded"}}), 1);
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "failed"}}), 0);
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "cancelled"}}), 0);
  EXPECT_EQ(Value(samples, "joule_queue_length"), 0);

  // Nodes and the cluster.
  EXPECT_EQ(Value(samples, "joule_node_power_watts", {{"node", "gpu-a"}}), 420);
  EXPECT_EQ(Value(samples, "joule_node_ready", {{"node", "gpu-a"}}), 1);
  EXPECT_EQ(Value(samples, "joule_node_telemetry_age_seconds", {{"node", "gpu-a"}}), 7);
  EXPECT_EQ(Value(samples, "joule_cluster_power_watts"), 420);

  // Histograms: both jobs waited 30 s; at least one placement cycle ran.
  EXPECT_EQ(Value(samples, "joule_queue_wait_seconds_count"), 2);
  EXPECT_EQ(Value(samples, "joule_queue_wait_seconds_sum"), 60);
  EXPECT_EQ(Value(samples, "joule_queue_wait_seconds_bucket", {{"le", "+Inf"}}), 2);
  EXPECT_GE(Value(samples, "joule_placement_latency_seconds_count"), 1);
  EXPECT_EQ(Find(samples, "joule_placement_latency_seconds_bucket").size(), 22u);
  EXPECT_EQ(Find(samples, "joule_queue_wait_seconds_bucket").size(), 22u);

  // Caps by reason: the profiling run's three steps, the objective's
  // choice, the operator's (under "operator", not its own reason).
  EXPECT_EQ(Value(samples, "joule_cap_changes_total", {{"reason", "profiling"}}), 3);
  EXPECT_EQ(Value(samples, "joule_cap_changes_total", {{"reason", "objective"}}), 1);
  EXPECT_EQ(Value(samples, "joule_cap_changes_total", {{"reason", "thermal"}}), 0);
  EXPECT_EQ(Value(samples, "joule_cap_changes_total", {{"reason", "budget"}}), 0);
  EXPECT_EQ(Value(samples, "joule_cap_changes_total", {{"reason", "operator"}}), 1);
  EXPECT_EQ(Find(samples, "joule_cap_changes_total").size(), 5u);

  // Per job: energy by component sums to the job's total.
  const std::vector<Sample> energy =
      Find(samples, "joule_job_energy_joules_total", {{"job", "job-1"}, {"user", "alice"}});
  ASSERT_EQ(energy.size(), 3u);
  EXPECT_GT(gpu_job.energy().total_j(), 0);
  EXPECT_DOUBLE_EQ(Sum(energy), gpu_job.energy().total_j());
  EXPECT_DOUBLE_EQ(Value(samples, "joule_job_energy_joules_total",
                         {{"job", "job-1"}, {"component", "gpu"}}),
                   gpu_job.energy().gpu_j());
  EXPECT_DOUBLE_EQ(Value(samples, "joule_job_energy_joules_total",
                         {{"job", "job-1"}, {"component", "static"}}),
                   gpu_job.energy().static_j());
  EXPECT_DOUBLE_EQ(
      Sum(Find(samples, "joule_job_energy_joules_total", {{"job", "job-2"}, {"user", "bob"}})),
      cpu_job.energy().total_j());
  // Emissions and cost, at the default 400 g/kWh and 0.15 EUR/kWh.
  EXPECT_NEAR(Value(samples, "joule_job_co2e_grams_total", {{"job", "job-1"}}),
              gpu_job.energy().total_j() / kJoulesPerKwh * 400, 1e-9);
  EXPECT_NEAR(Value(samples, "joule_job_co2e_grams_total", {{"job", "job-1"}}),
              gpu_job.footprint().co2e_g(), 1e-9);
  EXPECT_NEAR(Value(samples, "joule_job_cost_total", {{"job", "job-1"}, {"user", "alice"}}),
              gpu_job.footprint().cost(), 1e-12);
  EXPECT_EQ(Value(samples, "joule_cost_currency_info", {{"currency", "EUR"}}), 1);
  // Budget: only the job that has one. Saving: only the finished job.
  EXPECT_EQ(Value(samples, "joule_job_energy_budget_joules", {{"job", "job-2"}, {"user", "bob"}}),
            1e9);
  EXPECT_TRUE(Find(samples, "joule_job_energy_budget_joules", {{"job", "job-1"}}).empty());
  ASSERT_TRUE(gpu_job.has_savings());
  EXPECT_DOUBLE_EQ(Value(samples, "joule_job_energy_saved_joules", {{"job", "job-1"}}),
                   gpu_job.savings().saved_j());
  EXPECT_TRUE(Find(samples, "joule_job_energy_saved_joules", {{"job", "job-2"}}).empty());

  // Sums since start.
  const double all_j = gpu_job.energy().total_j() + cpu_job.energy().total_j();
  EXPECT_NEAR(Value(samples, "joule_energy_joules_total"), all_j, 1e-6);
  EXPECT_NEAR(Value(samples, "joule_co2e_grams_total"), all_j / kJoulesPerKwh * 400, 1e-9);
  EXPECT_NEAR(Value(samples, "joule_cost_total"), all_j / kJoulesPerKwh * 0.15, 1e-12);
  EXPECT_GT(gpu_job.savings().saved_j(), 0);
  EXPECT_DOUBLE_EQ(Value(samples, "joule_energy_saved_joules_total"),
                   gpu_job.savings().saved_j());

  // The process.
  EXPECT_EQ(Value(samples, "joule_leader"), 1);
  EXPECT_EQ(Value(samples, "joule_unstored_jobs"), 0);
  metrics_.SetLeader(false);
  EXPECT_EQ(Value(RefreshAndRender(), "joule_leader"), 0);
}

TEST_F(SchedulerMetricsTest, CountersFollowGrowthBetweenRefreshes) {
  RunScenario();
  std::vector<Sample> samples = RefreshAndRender();
  const double before = Sum(Find(samples, "joule_job_energy_joules_total", {{"job", "job-2"}}));
  const double total_before = Value(samples, "joule_energy_joules_total");
  RunGpuTask(3);  // job-2's CPU task reports 25 J more per second.
  samples = RefreshAndRender();
  EXPECT_DOUBLE_EQ(Sum(Find(samples, "joule_job_energy_joules_total", {{"job", "job-2"}})),
                   before + 75);
  EXPECT_DOUBLE_EQ(Value(samples, "joule_energy_joules_total"), total_before + 75);
  EXPECT_DOUBLE_EQ(Sum(Find(samples, "joule_job_energy_joules_total", {{"job", "job-2"}})),
                   GetJob("job-2").energy().total_j());
}

TEST_F(SchedulerMetricsTest, RetentionRemovesEndedJobsSeries) {
  RunScenario();
  std::vector<Sample> samples = RefreshAndRender();
  EXPECT_EQ(Find(samples, "joule_job_energy_joules_total", {{"job", "job-1"}}).size(), 3u);
  const double total = Value(samples, "joule_energy_joules_total");

  // Still within the retention after the job's end.
  clock_.Advance(kRetention - absl::Seconds(60));
  samples = RefreshAndRender();
  EXPECT_EQ(Find(samples, "joule_job_energy_joules_total", {{"job", "job-1"}}).size(), 3u);

  // Beyond it: every series labelled job-1 is gone; the running job's stay,
  // and so do the sums since start.
  clock_.Advance(absl::Seconds(120));
  samples = RefreshAndRender();
  EXPECT_THAT(rendered_, Not(HasSubstr("job=\"job-1\"")));
  EXPECT_EQ(Find(samples, "joule_job_energy_joules_total", {{"job", "job-2"}}).size(), 3u);
  EXPECT_EQ(Find(samples, "joule_job_energy_budget_joules", {{"job", "job-2"}}).size(), 1u);
  EXPECT_DOUBLE_EQ(Value(samples, "joule_energy_joules_total"), total);
  EXPECT_EQ(Value(samples, "joule_jobs", {{"state", "succeeded"}}), 1);
}

TEST_F(SchedulerMetricsTest, DroppedTelemetryIsCountedByNodeAndReason) {
  RunScenario();
  std::vector<Sample> samples = RefreshAndRender();
  EXPECT_TRUE(Find(samples, "joule_telemetry_rejected_total").empty());
  // A NaN and a terawatt from gpu-a: dropped, so its power stays at 420 W.
  Telemetry(std::nan(""), {});
  Telemetry(1e12, {});
  Telemetry(1e12, {});
  samples = RefreshAndRender();
  EXPECT_EQ(Value(samples, "joule_telemetry_rejected_total",
                  {{"node", "gpu-a"}, {"reason", "not_finite"}}),
            1);
  EXPECT_EQ(Value(samples, "joule_telemetry_rejected_total",
                  {{"node", "gpu-a"}, {"reason", "power_above_max"}}),
            2);
  EXPECT_EQ(Find(samples, "joule_telemetry_rejected_total").size(), 2u);
  EXPECT_EQ(Value(samples, "joule_node_power_watts", {{"node", "gpu-a"}}), 420);
  EXPECT_THAT(rendered_, HasSubstr("# TYPE joule_telemetry_rejected_total counter"));
  const absl::Status promtool = PromtoolCheckMetrics(rendered_);
  EXPECT_TRUE(promtool.ok()) << promtool;
}

TEST_F(SchedulerMetricsTest, RenderPassesPromtool) {
  RunScenario();
  RefreshAndRender();
  const absl::Status promtool = PromtoolCheckMetrics(rendered_);
  EXPECT_TRUE(promtool.ok()) << promtool << "\non:\n" << rendered_;
  // Kept for a look (bazel-testlogs/.../test.outputs).
  if (const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) {
    std::ofstream(absl::StrCat(dir, "/metrics.txt")) << rendered_;
  }
}

}  // namespace
}  // namespace joule
