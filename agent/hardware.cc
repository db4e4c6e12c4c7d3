#include "agent/hardware.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/nvml/nvml_gpu.h"
#include "agent/nvml/nvml_library.h"
#include "common/device_catalog.h"
#include "common/log.h"

namespace joule {
namespace {

v1::SourceStatus Source(const std::string& name, v1::SourceStatus::State state,
                        const std::string& message = "") {
  v1::SourceStatus status;
  status.set_name(name);
  status.set_state(state);
  status.set_message(message);
  if (state == v1::SourceStatus::STATE_DEGRADED) status.set_errors(1);
  return status;
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> ParseSimulate(
    const std::string& text, const std::string& node, absl::Time now) {
  std::vector<std::unique_ptr<GpuDevice>> gpus;
  if (text.empty()) return gpus;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    int count = 1;
    if (parts.size() > 2 || (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &count)) ||
        count < 1 || count > 64) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--simulate: \"", item, "\" is not MODEL:COUNT with COUNT in 1..64"));
    }
    absl::optional<GpuModelSpec> spec = FindGpuModel(parts[0]);
    if (!spec) {
      std::string known;
      for (const GpuModelSpec& model : GpuCatalog()) {
        absl::StrAppend(&known, known.empty() ? "" : ", ", model.model);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "--simulate: unknown GPU model \"", parts[0], "\"; known: ", known));
    }
    for (int i = 0; i < count; ++i) {
      gpus.push_back(std::make_unique<SimulatedGpu>(
          static_cast<int32_t>(gpus.size()), *spec, node, now));
    }
  }
  return gpus;
}

RaplCpuSource::RaplCpuSource(std::unique_ptr<RaplCpu> rapl, std::string procfs_root,
                             double idle_w_per_package)
    : rapl_(std::move(rapl)),
      procfs_root_(std::move(procfs_root)),
      idle_w_per_package_(idle_w_per_package) {}

double RaplCpuSource::idle_power_w() const {
  int packages = 0;
  for (const v1::Device& device : rapl_->Describe()) {
    packages += device.kind() == v1::DEVICE_KIND_CPU;
  }
  return idle_w_per_package_ * packages;
}

absl::StatusOr<CpuReading> RaplCpuSource::Sample(absl::Time now) {
  CpuReading reading;
  absl::StatusOr<std::vector<v1::DeviceSample>> samples = rapl_->Sample(now);
  if (!samples.ok()) return samples.status();
  for (const RaplDomainError& error : rapl_->last_errors()) {
    reading.errors.push_back(error.status);
  }
  for (v1::DeviceSample& sample : *samples) {
    const std::pair<int, int> key{sample.kind(), sample.index()};
    auto last = last_energy_j_.find(key);
    // A domain seen for the first time only sets its baseline.
    if (last != last_energy_j_.end()) {
      reading.energy_j += std::max(0.0, sample.energy_j() - last->second);
    }
    last_energy_j_[key] = sample.energy_j();
    reading.samples.push_back(std::move(sample));
  }
  absl::StatusOr<CpuTimes> times = ReadProcStat(procfs_root_);
  if (!times.ok()) {
    reading.errors.push_back(times.status());
  } else {
    if (last_times_) {
      absl::StatusOr<CpuTimesDelta> delta = CpuTimesBetween(*last_times_, *times);
      if (delta.ok()) {
        reading.busy_seconds = static_cast<double>(delta->busy) / sysconf(_SC_CLK_TCK);
        // RAPL has no utilization; the host's is the packages' best figure.
        for (v1::DeviceSample& sample : reading.samples) {
          if (sample.kind() == v1::DEVICE_KIND_CPU) {
            sample.set_utilization(delta->Utilization());
          }
        }
      } else {
        reading.errors.push_back(delta.status());
      }
    }
    last_times_ = *times;
  }
  return reading;
}

absl::StatusOr<Hardware> DiscoverHardware(const HardwareOptions& options,
                                          absl::Time now) {
  Hardware hardware;
  using State = v1::SourceStatus;

  // 1. GPUs.
  if (!options.simulate.empty()) {
    absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> gpus =
        ParseSimulate(options.simulate, options.node_name, now);
    if (!gpus.ok()) return gpus.status();
    hardware.gpus = *std::move(gpus);
    hardware.sources.push_back(Source("simulated", State::STATE_OK,
                                      absl::StrCat(hardware.gpus.size(),
                                                   " simulated GPUs (--simulate)")));
  } else {
    absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
        NvmlLibrary::Load(options.nvml_library);
    if (!nvml.ok()) {
      const bool absent = nvml.status().code() == absl::StatusCode::kNotFound;
      hardware.sources.push_back(Source(
          "nvml", absent ? State::STATE_ABSENT : State::STATE_DEGRADED,
          std::string(nvml.status().message())));
    } else {
      std::vector<absl::Status> skipped;
      absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> gpus =
          DiscoverNvmlGpus(*nvml, now, &skipped);
      if (!gpus.ok()) {
        hardware.sources.push_back(
            Source("nvml", State::STATE_DEGRADED, std::string(gpus.status().message())));
      } else {
        hardware.gpus = *std::move(gpus);
        hardware.sources.push_back(Source(
            "nvml", skipped.empty() ? State::STATE_OK : State::STATE_DEGRADED,
            skipped.empty()
                ? absl::StrCat(hardware.gpus.size(), " GPUs via ", (*nvml)->path())
                : absl::StrCat(hardware.gpus.size(), " GPUs usable; left out: ",
                               skipped[0].message())));
      }
    }
  }

  // 2. CPU power: RAPL, or the estimate.
  absl::StatusOr<std::unique_ptr<RaplCpu>> rapl = RaplCpu::Create(options.sysfs_root, now);
  if (rapl.ok()) {
    RaplCpu* raw = rapl->get();
    const v1::SourceStatus status = raw->Status();
    hardware.sources.push_back(status);
    // Package long-term limits as settings.
    const std::vector<RaplDomain>& domains = raw->reader().domains();
    for (size_t i = 0; i < domains.size(); ++i) {
      if (domains[i].dram || domains[i].constraints.empty()) continue;
      const int constraint = domains[i].constraints.front().index;
      hardware.cpu_settings[absl::StrCat("cpu/package", domains[i].package,
                                         "/power_limit_uw")] = CpuSetting{
          [raw, i, constraint]() -> absl::StatusOr<double> {
            absl::StatusOr<uint64_t> uw = raw->reader().PowerLimitUw(i, constraint);
            if (!uw.ok()) return uw.status();
            return static_cast<double>(*uw);
          },
          [raw, i, constraint](double uw) {
            return raw->reader().SetPowerLimit(i, constraint,
                                               static_cast<uint64_t>(uw + 0.5));
          }};
    }
    hardware.cpu = std::make_unique<RaplCpuSource>(*std::move(rapl), options.procfs_root,
                                                   options.cpu_idle_w);
  } else {
    const bool absent = rapl.status().code() == absl::StatusCode::kNotFound;
    hardware.sources.push_back(
        Source("rapl", absent ? State::STATE_ABSENT : State::STATE_DEGRADED,
               std::string(rapl.status().message())));
    hardware.sources.push_back(Source(
        "estimated", State::STATE_OK,
        absl::StrCat("CPU power estimated from /proc/stat utilization, TDP ",
                     options.cpu_tdp_w, " W, idle ", options.cpu_idle_w, " W")));
    hardware.cpu = std::make_unique<EstimatedCpu>(options.procfs_root, options.cpu_tdp_w,
                                                  options.cpu_idle_w);
  }

  // 3. cpufreq.
  std::vector<absl::Status> skipped;
  absl::StatusOr<CpufreqControl> cpufreq =
      CpufreqControl::Discover(options.sysfs_root, &skipped);
  if (!cpufreq.ok()) {
    hardware.sources.push_back(
        Source("cpufreq", State::STATE_DEGRADED, std::string(cpufreq.status().message())));
  } else if (cpufreq->policies().empty()) {
    hardware.sources.push_back(Source("cpufreq", State::STATE_ABSENT,
                                      skipped.empty() ? "no cpufreq policies"
                                                      : std::string(skipped[0].message())));
  } else {
    hardware.cpufreq = std::make_unique<CpufreqControl>(*std::move(cpufreq));
    CpufreqControl* control = hardware.cpufreq.get();
    for (const CpufreqPolicy& policy : control->policies()) {
      const int id = policy.id;
      hardware.cpu_settings[absl::StrCat("cpu/policy", id, "/max_freq_khz")] = CpuSetting{
          [control, id]() -> absl::StatusOr<double> {
            absl::StatusOr<CpufreqState> state = control->Read(id);
            if (!state.ok()) return state.status();
            return static_cast<double>(state->scaling_max_khz);
          },
          [control, id](double khz) {
            return control->SetMaxFrequency(id, static_cast<uint64_t>(khz + 0.5));
          },
          [control, id]() -> absl::StatusOr<double> {
            absl::StatusOr<CpufreqState> state = control->Read(id);
            if (!state.ok()) return state.status();
            return static_cast<double>(state->cpuinfo_max_khz);
          }};
    }
    hardware.sources.push_back(Source(
        "cpufreq", skipped.empty() ? State::STATE_OK : State::STATE_DEGRADED,
        skipped.empty() ? absl::StrCat(control->policies().size(), " policies")
                        : std::string(skipped[0].message())));
  }
  return hardware;
}

}  // namespace joule
