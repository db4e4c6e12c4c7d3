#include "agent/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/devices.h"
#include "agent/process/task_process.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "common/metrics_http.h"
#include "common/proto_time.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

using Labels = std::map<std::string, std::string>;

// Generous, for a loaded machine: tests poll and stop as soon as the
// condition holds, so this bounds only failures.
constexpr absl::Duration kDeadline = absl::Seconds(20);

// V100 figures from the device catalog (common/device_catalog.cc).
constexpr double kV100IdleW = 35;
constexpr double kV100LimitW = 250;
constexpr double kV100BusyW = 35 + 0.9 * (250 - 35);  // 228.5 W
constexpr double kV100ThrottleC = 83;
constexpr double kV100IdleSmClockHz = 135e6;
constexpr double kV100MemClockHz = 877e6;

constexpr double kCpuTdpW = 100;
constexpr double kCpuIdleW = 20;
constexpr double kStaticPowerW = 100;

constexpr char kWaitForGo[] = "while [ ! -e go ]; do sleep 0.01; done";

// One series of the text exposition format.
struct Series {
  std::string name;
  Labels labels;
  double value = 0;
};

void PrintTo(const Series& series, std::ostream* os) {
  *os << series.name << "{";
  for (const auto& [key, value] : series.labels) *os << key << "=\"" << value << "\",";
  *os << "} " << series.value;
}

// Parses Prometheus's text format (the subset prometheus-cpp writes):
// comments skipped, `name{k="v",...} value` or `name value`.
std::vector<Series> ParseMetrics(const std::string& text) {
  std::vector<Series> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    Series series;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    series.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        EXPECT_NE(eq, absl::string_view::npos) << line;
        if (eq == absl::string_view::npos) return out;
        const std::string key(line.substr(i, eq - i));
        i = eq + 2;  // Past `="`.
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
          ++i;
        }
        ++i;  // Past the closing quote.
        if (i < line.size() && line[i] == ',') ++i;
        series.labels[key] = value;
      }
      ++i;  // Past '}'.
    }
    const std::vector<absl::string_view> rest =
        absl::StrSplit(line.substr(i), ' ', absl::SkipEmpty());
    EXPECT_FALSE(rest.empty()) << line;
    if (rest.empty() || !absl::SimpleAtod(rest[0], &series.value)) {
      ADD_FAILURE() << "no value in: " << line;
      continue;
    }
    out.push_back(std::move(series));
  }
  return out;
}

// Whether `labels` holds every pair of `want`.
bool Matches(const Labels& labels, const Labels& want) {
  for (const auto& [key, value] : want) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// The series of `name` whose labels include `want`.
std::vector<Series> Select(const std::vector<Series>& all, const std::string& name,
                           const Labels& want = {}) {
  std::vector<Series> out;
  for (const Series& series : all) {
    if (series.name == name && Matches(series.labels, want)) out.push_back(series);
  }
  return out;
}

// The value of the one series of `name` matching `want`; nullopt (and a
// failure, when there are several) otherwise.
std::optional<double> Value(const std::vector<Series>& all, const std::string& name,
                            const Labels& want = {}) {
  const std::vector<Series> found = Select(all, name, want);
  EXPECT_LE(found.size(), 1u) << name;
  if (found.size() != 1) return std::nullopt;
  return found[0].value;
}

bool PollUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

std::string MakeTempDir() {
  std::string tmpl = absl::StrCat(::testing::TempDir(), "/metrics_XXXXXX");
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp: " << std::strerror(errno);
  return tmpl;
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

// Records what the agent sends. Thread-safe; guarded by mu_.
class RecordingSink : public MessageSink {
 public:
  void Send(const v1::AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(message);
  }

  std::optional<v1::NodeSample> LastTelemetry() const {
    absl::MutexLock lock(&mu_);
    for (auto it = messages_.rbegin(); it != messages_.rend(); ++it) {
      if (it->has_telemetry()) return it->telemetry();
    }
    return std::nullopt;
  }

  bool Exited(const std::string& task_id) const {
    absl::MutexLock lock(&mu_);
    for (const v1::AgentMessage& m : messages_) {
      if (m.has_task_event() && m.task_event().task_id() == task_id &&
          m.task_event().kind() == v1::TaskEvent::KIND_EXITED) {
        return true;
      }
    }
    return false;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::AgentMessage> messages_ ABSL_GUARDED_BY(mu_);
};

// A GPU whose reads fail while `failing` is set; otherwise an idle V100.
class FlakyGpu : public GpuDevice {
 public:
  FlakyGpu(int32_t index, absl::Time now)
      : gpu_(index, *FindGpuModel("V100"), "node-a", now) {}

  bool failing = false;

  v1::Device Describe() const override {
    v1::Device device = gpu_.Describe();
    device.set_source("nvml");
    return device;
  }
  absl::StatusOr<v1::DeviceSample> Sample(absl::Time now) override {
    if (failing) return absl::UnavailableError("GPU is lost");
    absl::StatusOr<v1::DeviceSample> sample = gpu_.Sample(now);
    if (sample.ok()) {
      sample->set_source("nvml");
      sample->set_throttle_reasons(throttle_reasons);
    }
    return sample;
  }
  absl::Status SetPowerLimit(double watts, absl::Time now) override {
    return gpu_.SetPowerLimit(watts, now);
  }
  double power_limit_w() const override { return gpu_.power_limit_w(); }
  absl::Status LockClocks(int32_t min_mhz, int32_t max_mhz) override {
    return gpu_.LockClocks(min_mhz, max_mhz);
  }
  absl::Status ResetClocks() override { return gpu_.ResetClocks(); }
  void SetBusy(bool busy, absl::Time now) override { gpu_.SetBusy(busy, now); }
  absl::optional<double> SimulatedSpeed() const override { return absl::nullopt; }

  uint64_t throttle_reasons = 0;

 private:
  SimulatedGpu gpu_;
};

class AgentMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_dir_ = MakeTempDir();
    procfs_ = work_dir_ + "/procfs";
    ASSERT_EQ(mkdir(procfs_.c_str(), 0755), 0) << std::strerror(errno);
    AddCpuTicks(0, 0);
  }

  void TearDown() override {
    if (agent_ == nullptr) return;
    agent_->StopAllTasks(absl::ZeroDuration());
    EXPECT_TRUE(PollUntil([&] {
      agent_->Tick();
      return agent_->running_tasks() == 0;
    }));
  }

  // The fixture /proc/stat's aggregate cpu line, advanced by the test.
  void AddCpuTicks(uint64_t busy, uint64_t idle) {
    cpu_busy_ += busy;
    cpu_idle_ += idle;
    WriteFile(procfs_ + "/stat",
              absl::StrFormat("cpu  %d 0 0 %d 0 0 0 0 0 0\n", cpu_busy_, cpu_idle_));
  }

  // A node "node-a" with `gpus` simulated V100s (after `devices`), an
  // estimated CPU and kStaticPowerW, reporting to metrics_.
  Agent& MakeAgent(int gpus, std::vector<std::unique_ptr<GpuDevice>> devices = {}) {
    for (int i = 0; i < gpus; ++i) {
      devices.push_back(
          std::make_unique<SimulatedGpu>(static_cast<int32_t>(devices.size()),
                                         *FindGpuModel("V100"), "node-a", clock_.Now()));
    }
    AgentOptions options;
    options.node_name = "node-a";
    options.work_dir = work_dir_;
    options.procfs_root = procfs_;
    options.cpus = 8;
    options.memory_bytes = int64_t{64} << 30;
    options.static_power_w = kStaticPowerW;
    options.base_env = {{"PATH", "/usr/bin:/bin"}};
    // Tasks run as root, in the test's own temp directory.
    options.task_users = TaskUserMap{{"local", TaskIdentity{"local", 0, 0, {}, ""}}};
    options.allow_root_tasks = true;
    agent_ = std::make_unique<Agent>(
        std::move(options), std::move(devices),
        std::make_unique<EstimatedCpu>(procfs_, kCpuTdpW, kCpuIdleW), &clock_,
        /*journal=*/nullptr, &metrics_);
    agent_->SetSink(&sink_);
    return *agent_;
  }

  std::vector<Series> Scrape() {
    return ParseMetrics(RenderMetrics(*metrics_.registry()));
  }

  v1::SchedulerCommand Start(const std::string& task_id, const std::string& job_id,
                             std::vector<int32_t> gpus) {
    v1::SchedulerCommand command;
    v1::StartTask* start = command.mutable_start_task();
    start->set_task_id(task_id);
    start->set_job_id(job_id);
    start->set_user("local");
    start->set_attempt(1);
    start->set_replica_count(1);
    start->set_command("/bin/sh");
    start->add_args("-c");
    start->add_args(kWaitForGo);
    for (int32_t index : gpus) start->add_gpu_indices(index);
    return command;
  }

  // Lets a task running kWaitForGo finish, and ticks the agent until it
  // has reported the exit.
  bool Finish(const std::string& task_id) {
    WriteFile(absl::StrCat(work_dir_, "/tasks/", task_id, "/go"), "");
    return PollUntil([&] {
      agent_->Tick();
      return sink_.Exited(task_id);
    });
  }

  FakeClock clock_;
  AgentMetrics metrics_{"node-a"};
  RecordingSink sink_;
  std::string work_dir_;
  std::string procfs_;
  uint64_t cpu_busy_ = 1000;
  uint64_t cpu_idle_ = 9000;
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentMetricsTest, SimulatedV100SampleGivesTheDocumentedSeries) {
  Agent& agent = MakeAgent(1);
  clock_.Advance(absl::Seconds(10));
  AddCpuTicks(500, 500);  // 50% busy: 60 W estimated.
  agent.SendTelemetry();
  const std::vector<Series> all = Scrape();

  const Labels gpu = {{"node", "node-a"},
                      {"kind", "gpu"},
                      {"index", "0"},
                      {"model", "V100"},
                      {"source", "simulated"}};
  // Exactly the documented labels, no more.
  const std::vector<Series> power = Select(all, "joule_device_power_watts", gpu);
  ASSERT_EQ(power.size(), 1u);
  EXPECT_EQ(power[0].labels, gpu);
  EXPECT_DOUBLE_EQ(power[0].value, kV100IdleW);
  EXPECT_EQ(Value(all, "joule_device_energy_joules_total", gpu), kV100IdleW * 10);
  const std::optional<double> temp = Value(all, "joule_device_temperature_celsius", gpu);
  ASSERT_TRUE(temp.has_value());
  EXPECT_GT(*temp, 30);
  EXPECT_LT(*temp, 40);
  EXPECT_EQ(Value(all, "joule_device_throttle_temperature_celsius", gpu), kV100ThrottleC);
  EXPECT_EQ(Value(all, "joule_device_utilization_ratio", gpu), 0);
  EXPECT_EQ(Value(all, "joule_device_memory_utilization_ratio", gpu), 0);
  EXPECT_EQ(Value(all, "joule_device_sm_clock_hertz", gpu), kV100IdleSmClockHz);
  EXPECT_EQ(Value(all, "joule_device_memory_clock_hertz", gpu), kV100MemClockHz);
  EXPECT_EQ(Value(all, "joule_device_power_limit_watts", gpu), kV100LimitW);
  EXPECT_EQ(Value(all, "joule_device_power_limit_default_watts", gpu), kV100LimitW);
  EXPECT_EQ(Value(all, "joule_device_throttled", gpu), 0);

  // The estimated CPU: power, energy, utilization and its nominal default
  // limit; no temperature, clocks, enforced limit, throttle state or
  // throttle temperature (none is known).
  const Labels cpu = {{"node", "node-a"},
                      {"kind", "cpu"},
                      {"index", "0"},
                      {"model", "CPU"},
                      {"source", "estimated"}};
  EXPECT_EQ(Value(all, "joule_device_power_watts", cpu), 60);
  EXPECT_EQ(Value(all, "joule_device_energy_joules_total", cpu), 600);
  EXPECT_EQ(Value(all, "joule_device_utilization_ratio", cpu), 0.5);
  EXPECT_EQ(Value(all, "joule_device_power_limit_default_watts", cpu), kCpuTdpW);
  for (const char* name :
       {"joule_device_temperature_celsius", "joule_device_throttle_temperature_celsius",
        "joule_device_memory_utilization_ratio", "joule_device_sm_clock_hertz",
        "joule_device_memory_clock_hertz", "joule_device_power_limit_watts",
        "joule_device_throttled"}) {
    EXPECT_THAT(Select(all, name, cpu), IsEmpty()) << name;
  }

  // The agent's own series.
  EXPECT_EQ(Value(all, "joule_agent_last_sample_timestamp_seconds", {{"node", "node-a"}}),
            absl::ToDoubleSeconds(clock_.Now() - absl::UnixEpoch()));
  for (const char* source : {"simulated", "estimated"}) {
    const Labels labels = {{"node", "node-a"}, {"source", source}};
    EXPECT_EQ(Value(all, "joule_agent_source_degraded", labels), 0) << source;
    EXPECT_EQ(Value(all, "joule_agent_sample_errors_total", labels), 0) << source;
  }
  EXPECT_EQ(Value(all, "joule_agent_connected", {{"node", "node-a"}}), 0);
  EXPECT_EQ(Value(all, "joule_agent_stream_reconnects_total", {{"node", "node-a"}}), 0);
  EXPECT_THAT(Select(all, "joule_task_energy_joules_total"), IsEmpty());
}

TEST_F(AgentMetricsTest, BusyGpuShowsItsLoadAndAThrottleReason) {
  auto flaky = std::make_unique<FlakyGpu>(0, clock_.Now());
  flaky->throttle_reasons = 0x4;  // SW power cap.
  std::vector<std::unique_ptr<GpuDevice>> devices;
  devices.push_back(std::move(flaky));
  Agent& agent = MakeAgent(0, std::move(devices));
  agent.HandleCommand(Start("task-a", "job-1", {0}));
  clock_.Advance(absl::Seconds(10));
  agent.SendTelemetry();
  const std::vector<Series> all = Scrape();
  const Labels gpu = {{"kind", "gpu"}, {"index", "0"}, {"source", "nvml"}};
  EXPECT_EQ(Value(all, "joule_device_power_watts", gpu), kV100BusyW);
  EXPECT_EQ(Value(all, "joule_device_utilization_ratio", gpu), 1);
  EXPECT_EQ(Value(all, "joule_device_memory_utilization_ratio", gpu), 0.6);
  EXPECT_EQ(Value(all, "joule_device_sm_clock_hertz", gpu), 1380e6);
  EXPECT_EQ(Value(all, "joule_device_throttled", gpu), 1);
}

TEST(AgentMetricsCounterTest, DeviceEnergyGrowsByDeltasAndNeverDecreases) {
  AgentMetrics metrics("node-a");
  v1::Device device;
  device.set_kind(v1::DEVICE_KIND_GPU);
  device.set_index(3);
  device.set_model("A40");
  device.set_source("nvml");
  metrics.OnDevices({device});
  const Labels labels = {{"node", "node-a"},
                         {"kind", "gpu"},
                         {"index", "3"},
                         {"model", "A40"},
                         {"source", "nvml"}};
  auto energy_after = [&](double cumulative_j) {
    v1::NodeSample sample;
    v1::DeviceSample* reading = sample.add_devices();
    reading->set_kind(v1::DEVICE_KIND_GPU);
    reading->set_index(3);
    reading->set_source("nvml");
    reading->set_energy_j(cumulative_j);
    metrics.OnSample(sample);
    return Value(ParseMetrics(RenderMetrics(*metrics.registry())),
                 "joule_device_energy_joules_total", labels);
  };
  EXPECT_EQ(energy_after(100), 100);
  EXPECT_EQ(energy_after(150), 150);
  EXPECT_EQ(energy_after(150), 150);
  // The device's counter reset: nothing is taken back, and it counts on
  // from the new baseline.
  EXPECT_EQ(energy_after(20), 150);
  EXPECT_EQ(energy_after(50), 180);
}

TEST(AgentMetricsCounterTest, TaskEnergyGrowsByDeltasAndNeverDecreases) {
  AgentMetrics metrics("node-a");
  v1::StartTask task;
  task.set_task_id("job-7.0");
  task.set_job_id("job-7");
  auto energy_after = [&](double gpu_j, double cpu_j, double static_j) {
    v1::Energy energy;
    energy.set_gpu_j(gpu_j);
    energy.set_cpu_j(cpu_j);
    energy.set_static_j(static_j);
    metrics.OnTaskEnergy(task, energy);
    std::map<std::string, double> out;
    for (const Series& series : ParseMetrics(RenderMetrics(*metrics.registry()))) {
      if (series.name != "joule_task_energy_joules_total") continue;
      EXPECT_EQ(series.labels.at("task"), "job-7.0");
      EXPECT_EQ(series.labels.at("job"), "job-7");
      out[series.labels.at("component")] = series.value;
    }
    return out;
  };
  using Totals = std::map<std::string, double>;
  EXPECT_EQ(energy_after(10, 2, 5), (Totals{{"gpu", 10}, {"cpu", 2}, {"static", 5}}));
  EXPECT_EQ(energy_after(30, 2, 6), (Totals{{"gpu", 30}, {"cpu", 2}, {"static", 6}}));
  EXPECT_EQ(energy_after(25, 3, 6), (Totals{{"gpu", 30}, {"cpu", 3}, {"static", 6}}));
  metrics.OnTaskEnded("job-7.0");
  EXPECT_EQ(energy_after(0, 0, 0), (Totals{{"gpu", 0}, {"cpu", 0}, {"static", 0}}))
      << "a task seen again after its end starts from scratch";
}

TEST_F(AgentMetricsTest, TaskSeriesExistWhileTheTaskRunsAndGoAfterItEnds) {
  Agent& agent = MakeAgent(2);
  agent.HandleCommand(Start("task-a", "job-1", {0}));
  agent.HandleCommand(Start("task-b", "job-2", {1}));
  ASSERT_EQ(agent.running_tasks(), 2);
  for (int step = 0; step < 2; ++step) {
    clock_.Advance(absl::Seconds(10));
    AddCpuTicks(0, 1000);
    agent.SendTelemetry();
  }
  std::optional<v1::NodeSample> sample = sink_.LastTelemetry();
  ASSERT_TRUE(sample.has_value());
  std::vector<Series> all = Scrape();
  for (const v1::TaskUsage& usage : sample->tasks()) {
    const std::string job = usage.task_id() == "task-a" ? "job-1" : "job-2";
    const Labels task = {
        {"node", "node-a"}, {"task", usage.task_id()}, {"job", job}, {"user", "local"}};
    EXPECT_EQ(Select(all, "joule_task_energy_joules_total", task).size(), 3u);
    for (const auto& [component, joules] : std::vector<std::pair<std::string, double>>{
             {"gpu", usage.energy().gpu_j()},
             {"cpu", usage.energy().cpu_j()},
             {"static", usage.energy().static_j()}}) {
      Labels labels = task;
      labels["component"] = component;
      const std::optional<double> value =
          Value(all, "joule_task_energy_joules_total", labels);
      ASSERT_TRUE(value.has_value()) << usage.task_id() << " " << component;
      EXPECT_NEAR(*value, joules, 1e-9) << usage.task_id() << " " << component;
    }
  }
  EXPECT_NEAR(*Value(all, "joule_task_energy_joules_total",
                     {{"task", "task-a"}, {"component", "gpu"}}),
              kV100BusyW * 20, 1e-9);

  // task-a ends: its series go, task-b's stay.
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Finish("task-a"));
  all = Scrape();
  EXPECT_THAT(Select(all, "joule_task_energy_joules_total", {{"task", "task-a"}}),
              IsEmpty());
  EXPECT_EQ(Select(all, "joule_task_energy_joules_total", {{"task", "task-b"}}).size(),
            3u);
  ASSERT_TRUE(Finish("task-b"));
  EXPECT_THAT(Select(Scrape(), "joule_task_energy_joules_total"), IsEmpty());
}

TEST_F(AgentMetricsTest, FailedReadsAreCountedAndTheSourceShowsDegraded) {
  auto flaky = std::make_unique<FlakyGpu>(0, clock_.Now());
  FlakyGpu* gpu = flaky.get();
  std::vector<std::unique_ptr<GpuDevice>> devices;
  devices.push_back(std::move(flaky));
  Agent& agent = MakeAgent(0, std::move(devices));
  const Labels nvml = {{"node", "node-a"}, {"source", "nvml"}};
  const Labels device = {{"kind", "gpu"}, {"index", "0"}};

  clock_.Advance(absl::Seconds(1));
  agent.SendTelemetry();
  std::vector<Series> all = Scrape();
  EXPECT_EQ(Value(all, "joule_agent_source_degraded", nvml), 0);
  EXPECT_EQ(Value(all, "joule_agent_sample_errors_total", nvml), 0);
  EXPECT_EQ(Value(all, "joule_device_power_watts", device), kV100IdleW);

  gpu->failing = true;
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(1));
    agent.SendTelemetry();
  }
  all = Scrape();
  EXPECT_EQ(Value(all, "joule_agent_source_degraded", nvml), 1);
  EXPECT_EQ(Value(all, "joule_agent_sample_errors_total", nvml), 2);
  // No stale readings while the device cannot be read; its energy stays.
  EXPECT_THAT(Select(all, "joule_device_power_watts", device), IsEmpty());
  EXPECT_THAT(Select(all, "joule_device_temperature_celsius", device), IsEmpty());
  EXPECT_EQ(Value(all, "joule_device_energy_joules_total", device), kV100IdleW);
  EXPECT_EQ(Value(all, "joule_device_throttle_temperature_celsius", device),
            kV100ThrottleC);

  gpu->failing = false;
  clock_.Advance(absl::Seconds(1));
  agent.SendTelemetry();
  all = Scrape();
  EXPECT_EQ(Value(all, "joule_agent_source_degraded", nvml), 0);
  EXPECT_EQ(Value(all, "joule_agent_sample_errors_total", nvml), 2);
  EXPECT_EQ(Value(all, "joule_device_power_watts", device), kV100IdleW);
  // The energy of the unread seconds is counted once the device reads again.
  EXPECT_EQ(Value(all, "joule_device_energy_joules_total", device), kV100IdleW * 4);
}

TEST(AgentMetricsLinkTest, ConnectedFollowsTheLinkAndReconnectsOnlyGrow) {
  AgentMetrics metrics("node-a");
  const Labels node = {{"node", "node-a"}};
  auto scrape = [&] { return ParseMetrics(RenderMetrics(*metrics.registry())); };
  metrics.ObserveLink(true, 0);
  EXPECT_EQ(Value(scrape(), "joule_agent_connected", node), 1);
  EXPECT_EQ(Value(scrape(), "joule_agent_stream_reconnects_total", node), 0);
  metrics.ObserveLink(false, 3);
  EXPECT_EQ(Value(scrape(), "joule_agent_connected", node), 0);
  EXPECT_EQ(Value(scrape(), "joule_agent_stream_reconnects_total", node), 3);
  metrics.ObserveLink(true, 4);
  EXPECT_EQ(Value(scrape(), "joule_agent_connected", node), 1);
  EXPECT_EQ(Value(scrape(), "joule_agent_stream_reconnects_total", node), 4);
}

TEST_F(AgentMetricsTest, EveryFamilyHasHelpAndTypeAndPassesPromtool) {
  // Every family populated: devices, a running task, a failed read, the link.
  auto flaky = std::make_unique<FlakyGpu>(0, clock_.Now());
  FlakyGpu* gpu = flaky.get();
  std::vector<std::unique_ptr<GpuDevice>> devices;
  devices.push_back(std::move(flaky));
  Agent& agent = MakeAgent(1, std::move(devices));
  agent.HandleCommand(Start("task-a", "job-1", {1}));
  // GPU 0 is a Kubernetes pod's (agent/kubelet/): the per-pod series.
  v1::KubernetesContainer holder;
  holder.set_namespace_("team-a");
  holder.set_pod("infer-0");
  holder.set_container("server");
  agent.SetGpuHolders({{0, holder}});
  clock_.Advance(absl::Seconds(5));
  agent.SendTelemetry();
  gpu->failing = true;
  clock_.Advance(absl::Seconds(5));
  agent.SendTelemetry();
  gpu->failing = false;
  metrics_.ObserveLink(true, 1);
  const std::string text = RenderMetrics(*metrics_.registry());

  const std::set<std::string> documented = {
      "joule_device_power_watts",
      "joule_device_energy_joules_total",
      "joule_device_temperature_celsius",
      "joule_device_throttle_temperature_celsius",
      "joule_device_utilization_ratio",
      "joule_device_memory_utilization_ratio",
      "joule_device_sm_clock_hertz",
      "joule_device_memory_clock_hertz",
      "joule_device_power_limit_watts",
      "joule_device_power_limit_default_watts",
      "joule_device_throttled",
      "joule_task_energy_joules_total",
      "joule_agent_sample_errors_total",
      "joule_agent_source_degraded",
      "joule_agent_stream_reconnects_total",
      "joule_agent_connected",
      "joule_agent_last_sample_timestamp_seconds",
      "joule_pod_gpu_energy_joules_total",
      "joule_pod_gpus",
      "joule_pod_series_overflow_total",
  };
  std::set<std::string> helped, typed, named;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (words.size() >= 3 && words[0] == "#" && words[1] == "HELP")
      helped.insert(words[2]);
    if (words.size() >= 4 && words[0] == "#" && words[1] == "TYPE") {
      typed.insert(words[2]);
      EXPECT_EQ(words[3], absl::EndsWith(words[2], "_total") ? "counter" : "gauge")
          << line;
    }
  }
  for (const Series& series : ParseMetrics(text)) named.insert(series.name);
  EXPECT_EQ(named, documented);
  EXPECT_EQ(helped, documented);
  EXPECT_EQ(typed, documented);

  const absl::Status promtool = PromtoolCheckMetrics(text);
  EXPECT_TRUE(promtool.ok()) << promtool << "\non:\n" << text;
}

// ---------------------------------------------------------------------------
// The real binary.

// A joule-agent started by the test, stopped (SIGTERM, then SIGKILL) when
// it goes out of scope.
class AgentProcess {
 public:
  explicit AgentProcess(const std::vector<std::string>& args) {
    dir_ = MakeTempDir();
    SpawnOptions options;
    options.path = "agent/joule-agent";  // In the test's runfiles.
    options.args = args;
    options.args.push_back(absl::StrCat("--work-dir=", dir_, "/work"));
    // No real RAPL, hwmon or cpufreq: an estimated CPU.
    options.args.push_back(absl::StrCat("--sysfs-root=", dir_, "/sys"));
    options.env = {{"PATH", "/usr/bin:/bin"}};
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) process_ = *std::move(process);
  }

  ~AgentProcess() {
    if (process_ == nullptr || exit_.has_value()) return;
    process_->Terminate(absl::Now(), absl::Seconds(5));
    if (!PollUntil([&] {
          process_->Tick(absl::Now());
          return process_->Poll().has_value();
        })) {
      process_->KillGroup();
    }
  }

  // The exit code once the agent has exited by itself.
  std::optional<int> Wait() {
    if (process_ == nullptr) return std::nullopt;
    PollUntil([&] { return (exit_ = process_->Poll()).has_value(); });
    if (!exit_.has_value()) return std::nullopt;
    return exit_->exit_code;
  }

  // The address after `prefix` on a line of the agent's stdout, once it
  // has printed one.
  std::string WaitForAddress(const std::string& prefix) {
    std::string address;
    PollUntil([&] {
      for (absl::string_view line : absl::StrSplit(ReadAll(dir_ + "/stdout"), '\n')) {
        if (absl::ConsumePrefix(&line, prefix)) address = std::string(line);
      }
      return !address.empty() || (process_ != nullptr && process_->Poll().has_value());
    });
    return address;
  }

  std::string err() const { return ReadAll(dir_ + "/stderr"); }

 private:
  std::string dir_;
  std::unique_ptr<TaskProcess> process_;
  std::optional<ExitStatus> exit_;
};

TEST(AgentBinaryTest, ServesDeviceSeriesOnTheAddressItPrints) {
  AgentProcess agent({"--simulate=V100:2", "--metrics-listen=127.0.0.1:0",
                      "--listen=127.0.0.1:0", "--scheduler=127.0.0.1:1", "--insecure",
                      "--node-name=metrics-test", "--telemetry-period=0.1"});
  const std::string address = agent.WaitForAddress("metrics on ");
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:")) << agent.err();
  EXPECT_NE(address, "127.0.0.1:0");

  std::string response;
  ASSERT_TRUE(PollUntil([&] {
    response = HttpGet(address, "/metrics");
    return absl::StrContains(response, "joule_device_power_watts{");
  })) << response
      << agent.err();
  EXPECT_THAT(response, HasSubstr("200 OK"));
  const std::vector<Series> all =
      ParseMetrics(response.substr(response.find("\r\n\r\n") + 4));
  std::vector<std::string> gpus;
  for (const Series& series :
       Select(all, "joule_device_power_watts", {{"kind", "gpu"}})) {
    EXPECT_EQ(series.labels.at("node"), "metrics-test");
    EXPECT_EQ(series.labels.at("model"), "V100");
    EXPECT_EQ(series.labels.at("source"), "simulated");
    EXPECT_EQ(series.value, kV100IdleW);
    gpus.push_back(series.labels.at("index"));
  }
  EXPECT_THAT(gpus, UnorderedElementsAre("0", "1"));
  EXPECT_EQ(Value(all, "joule_agent_connected"), 0);
}

TEST(AgentBinaryTest, MalformedMetricsAddressFailsStartup) {
  AgentProcess agent({"--simulate=V100:1", "--metrics-listen=no-port",
                      "--listen=127.0.0.1:0", "--scheduler=127.0.0.1:1", "--insecure"});
  EXPECT_EQ(agent.Wait(), 2);
  EXPECT_THAT(agent.err(), HasSubstr("--metrics-listen no-port: want HOST:PORT"));
}

}  // namespace
}  // namespace joule
