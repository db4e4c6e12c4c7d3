#include "agent/metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_time.h"

namespace joule {
namespace {

constexpr double kHertzPerMegahertz = 1e6;

prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& registry,
                                             const std::string& name,
                                             const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& registry,
                                                 const std::string& name,
                                                 const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

std::string KindName(v1::DeviceKind kind) {
  switch (kind) {
    case v1::DEVICE_KIND_GPU:
      return "gpu";
    case v1::DEVICE_KIND_CPU:
      return "cpu";
    case v1::DEVICE_KIND_MEMORY:
      return "memory";
    default:
      return "unknown";
  }
}

// Sets the series of `labels` in `family` to `value`, or removes it.
void SetOrRemove(prometheus::Family<prometheus::Gauge>& family,
                 const prometheus::Labels& labels, std::optional<double> value) {
  if (value.has_value()) {
    family.Add(labels).Set(*value);
  } else if (family.Has(labels)) {
    // Add returns the existing series.
    family.Remove(&family.Add(labels));
  }
}

// Adds what `total` grew by since `*last` to `counter`; a total that went
// backwards adds nothing. `*last` becomes `total` either way.
void IncrementByGrowth(prometheus::Counter& counter, double total,
                       std::optional<double>* last) {
  const double previous = last->value_or(0);
  if (total > previous) counter.Increment(total - previous);
  *last = total;
}

}  // namespace

AgentMetrics::AgentMetrics(std::string node, std::vector<GpuModelSpec> catalog)
    : node_(std::move(node)),
      catalog_(std::move(catalog)),
      registry_(std::make_shared<prometheus::Registry>()),
      device_power_(Gauge(*registry_, "joule_device_power_watts",
                          "Power of the device at the last sample, in watts.")),
      device_energy_(Counter(*registry_, "joule_device_energy_joules_total",
                             "Energy of the device since the agent started, in joules "
                             "(the device's counter, or power integrated where it "
                             "has none).")),
      device_temperature_(Gauge(*registry_, "joule_device_temperature_celsius",
                                "Temperature of the device, in degrees Celsius.")),
      device_throttle_temperature_(
          Gauge(*registry_, "joule_device_throttle_temperature_celsius",
                "The GPU model's throttle temperature (GPU catalog), in degrees "
                "Celsius.")),
      device_utilization_(Gauge(*registry_, "joule_device_utilization_ratio",
                                "Busy fraction of the device, 0 to 1.")),
      device_memory_utilization_(Gauge(*registry_,
                                       "joule_device_memory_utilization_ratio",
                                       "Memory busy fraction of the GPU, 0 to 1.")),
      device_sm_clock_(Gauge(*registry_, "joule_device_sm_clock_hertz",
                             "SM clock of the GPU, in hertz.")),
      device_memory_clock_(Gauge(*registry_, "joule_device_memory_clock_hertz",
                                 "Memory clock of the GPU, in hertz.")),
      device_power_limit_(Gauge(*registry_, "joule_device_power_limit_watts",
                                "Power limit in force on the device, in watts.")),
      device_power_limit_default_(Gauge(*registry_,
                                        "joule_device_power_limit_default_watts",
                                        "The device's default power limit, in watts.")),
      device_throttled_(Gauge(*registry_, "joule_device_throttled",
                              "1 while the GPU reports a clock-throttle reason, "
                              "else 0.")),
      task_energy_(Counter(*registry_, "joule_task_energy_joules_total",
                           "Energy attributed to a running task, in joules, by "
                           "component (gpu, cpu, static).")),
      sample_errors_(Counter(*registry_, "joule_agent_sample_errors_total",
                             "Failed reads of a telemetry source.")),
      source_degraded_(Gauge(*registry_, "joule_agent_source_degraded",
                             "1 while a telemetry source is degraded (reads "
                             "failing, fell back), else 0.")),
      reconnects_(Counter(*registry_, "joule_agent_stream_reconnects_total",
                          "Reconnects of the stream to the scheduler.")),
      connected_(Gauge(*registry_, "joule_agent_connected",
                       "1 while the stream to the scheduler is up, else 0.")),
      last_sample_timestamp_(
          Gauge(*registry_, "joule_agent_last_sample_timestamp_seconds",
                "Unix time of the last telemetry sample, in seconds.")),
      pod_energy_(*registry_, node_) {
  // Present from the start, so that rates and alerts see them at 0.
  reconnects_.Add({{"node", node_}});
  connected_.Add({{"node", node_}}).Set(0);
}

void AgentMetrics::OnDevices(const std::vector<v1::Device>& devices) {
  absl::MutexLock lock(&mu_);
  for (const v1::Device& device : devices) {
    DeviceState& state = devices_[{device.kind(), device.index()}];
    if (state.energy != nullptr) continue;  // Labels are fixed once known.
    state.labels = {{"node", node_},
                    {"kind", KindName(device.kind())},
                    {"index", absl::StrCat(device.index())},
                    {"model", device.model()},
                    {"source", device.source()}};
    state.energy = &device_energy_.Add(state.labels);
    if (device.power_limit_default_w() > 0) {
      device_power_limit_default_.Add(state.labels).Set(device.power_limit_default_w());
    }
    if (device.kind() == v1::DEVICE_KIND_GPU) {
      if (absl::optional<GpuModelSpec> spec = FindGpuModel(catalog_, device.model())) {
        device_throttle_temperature_.Add(state.labels).Set(spec->throttle_temp_c);
      }
    }
  }
}

AgentMetrics::DeviceState& AgentMetrics::DeviceFor(const v1::DeviceSample& sample) {
  DeviceState& state = devices_[{sample.kind(), sample.index()}];
  if (state.energy == nullptr) {
    // A device the agent did not describe: labelled from the sample alone.
    state.labels = {{"node", node_},
                    {"kind", KindName(sample.kind())},
                    {"index", absl::StrCat(sample.index())},
                    {"model", ""},
                    {"source", sample.source()}};
    state.energy = &device_energy_.Add(state.labels);
  }
  return state;
}

void AgentMetrics::SetSampleGauges(const prometheus::Labels& labels,
                                   const v1::DeviceSample* sample) {
  // All unset (removed) when the device was not read.
  std::optional<double> power_w, temp_c, utilization, memory_utilization, sm_clock_hz,
      memory_clock_hz, power_limit_w, throttled;
  if (sample != nullptr) {
    const bool gpu = sample->kind() == v1::DEVICE_KIND_GPU;
    power_w = sample->power_w();
    // GPUs always read a temperature; a CPU package has one where a sensor
    // was found (0 otherwise), a DRAM domain never.
    if (gpu || sample->temp_c() > 0) temp_c = sample->temp_c();
    if (gpu || sample->kind() == v1::DEVICE_KIND_CPU) utilization = sample->utilization();
    // 0: no limit is enforced (the estimated CPU) or it could not be read.
    if (sample->power_cap_w() > 0) power_limit_w = sample->power_cap_w();
    if (gpu) {
      memory_utilization = sample->memory_utilization();
      sm_clock_hz = sample->sm_clock_mhz() * kHertzPerMegahertz;
      memory_clock_hz = sample->mem_clock_mhz() * kHertzPerMegahertz;
      // Only GPUs (NVML) report throttle reasons; elsewhere it is unknown.
      throttled = sample->throttle_reasons() != 0 ? 1 : 0;
    }
  }
  SetOrRemove(device_power_, labels, power_w);
  SetOrRemove(device_temperature_, labels, temp_c);
  SetOrRemove(device_utilization_, labels, utilization);
  SetOrRemove(device_memory_utilization_, labels, memory_utilization);
  SetOrRemove(device_sm_clock_, labels, sm_clock_hz);
  SetOrRemove(device_memory_clock_, labels, memory_clock_hz);
  SetOrRemove(device_power_limit_, labels, power_limit_w);
  SetOrRemove(device_throttled_, labels, throttled);
}

prometheus::Counter& AgentMetrics::SampleErrors(const std::string& source) {
  return sample_errors_.Add({{"node", node_}, {"source", source}});
}

void AgentMetrics::OnSample(const v1::NodeSample& sample) {
  pod_energy_.OnSample(sample);
  absl::MutexLock lock(&mu_);
  std::map<DeviceKey, const v1::DeviceSample*> read;
  for (const v1::DeviceSample& device : sample.devices()) {
    read[{device.kind(), device.index()}] = &device;
    DeviceState& state = DeviceFor(device);
    IncrementByGrowth(*state.energy, device.energy_j(), &state.last_energy_j);
  }
  for (const auto& [key, state] : devices_) {
    auto it = read.find(key);
    SetSampleGauges(state.labels, it == read.end() ? nullptr : it->second);
  }
  for (const v1::SourceStatus& source : sample.sources()) {
    SampleErrors(source.name());  // At 0 until the first error.
    source_degraded_.Add({{"node", node_}, {"source", source.name()}})
        .Set(source.state() == v1::SourceStatus::STATE_DEGRADED ? 1 : 0);
  }
  last_sample_timestamp_.Add({{"node", node_}})
      .Set(absl::ToDoubleSeconds(FromProtoTime(sample.time()) - absl::UnixEpoch()));
}

void AgentMetrics::OnReadError(const std::string& source) {
  absl::MutexLock lock(&mu_);
  SampleErrors(source).Increment();
}

void AgentMetrics::OnTaskEnergy(const v1::StartTask& task, const v1::Energy& energy) {
  absl::MutexLock lock(&mu_);
  TaskState& state = tasks_[task.task_id()];
  const std::pair<const char*, double> components[] = {
      {"gpu", energy.gpu_j()}, {"cpu", energy.cpu_j()}, {"static", energy.static_j()}};
  for (const auto& [component, total_j] : components) {
    prometheus::Counter*& counter = state.energy[component];
    if (counter == nullptr) {
      counter = &task_energy_.Add({{"node", node_},
                                   {"job", task.job_id()},
                                   {"task", task.task_id()},
                                   {"user", task.user()},
                                   {"component", component}});
    }
    IncrementByGrowth(*counter, total_j, &state.last_energy_j[component]);
  }
}

void AgentMetrics::OnTaskEnded(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return;
  for (const auto& [component, counter] : it->second.energy) task_energy_.Remove(counter);
  tasks_.erase(it);
}

void AgentMetrics::ObserveLink(bool connected, int64_t reconnects) {
  absl::MutexLock lock(&mu_);
  connected_.Add({{"node", node_}}).Set(connected ? 1 : 0);
  if (reconnects > last_reconnects_) {
    reconnects_.Add({{"node", node_}})
        .Increment(static_cast<double>(reconnects - last_reconnects_));
  }
  last_reconnects_ = reconnects;
}

}  // namespace joule
