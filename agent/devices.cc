#include "agent/devices.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

constexpr double kDemandFraction = 0.9;
constexpr double kMemoryBoundFraction = 0.35;
constexpr double kAmbientC = 30;
constexpr double kHeatRiseC = 55;
constexpr double kThermalTimeConstantS = 20;

}  // namespace

SimulatedGpu::SimulatedGpu(int32_t index, const GpuModelSpec& spec,
                           const std::string& node, absl::Time now)
    : index_(index),
      spec_(spec),
      uuid_(absl::StrFormat("GPU-sim-%s-%d", node, index)),
      cap_w_(spec.power_limit_default_w),
      last_(now) {}

v1::Device SimulatedGpu::Describe() const {
  v1::Device device;
  device.set_index(index_);
  device.set_kind(v1::DEVICE_KIND_GPU);
  device.set_model(spec_.model);
  device.set_uuid(uuid_);
  device.set_memory_bytes(spec_.memory_bytes);
  device.set_power_limit_min_w(spec_.power_limit_min_w);
  device.set_power_limit_default_w(spec_.power_limit_default_w);
  device.set_power_limit_max_w(spec_.power_limit_max_w);
  device.set_idle_power_w(spec_.idle_power_w);
  device.set_clock_min_mhz(spec_.sm_clock_min_mhz);
  device.set_clock_max_mhz(spec_.sm_clock_max_mhz);
  device.set_source("simulated");
  return device;
}

double SimulatedGpu::PowerW() const {
  if (!busy_) return spec_.idle_power_w;
  const double demand =
      spec_.idle_power_w +
      kDemandFraction * (spec_.power_limit_max_w - spec_.idle_power_w);
  return std::min(cap_w_, demand);
}

double SimulatedGpu::ClockFraction() const {
  const double min_fraction =
      static_cast<double>(spec_.sm_clock_min_mhz) / spec_.sm_clock_max_mhz;
  if (!busy_) return min_fraction;
  const double demand =
      spec_.idle_power_w +
      kDemandFraction * (spec_.power_limit_max_w - spec_.idle_power_w);
  const double dynamic = std::max(0.0, PowerW() - spec_.idle_power_w) /
                         (demand - spec_.idle_power_w);
  return std::clamp(std::cbrt(dynamic), min_fraction, 1.0);
}

absl::optional<double> SimulatedGpu::SimulatedSpeed() const {
  // Relative to the speed at the uncapped demand (f = 1).
  const double f = std::max(ClockFraction(), 1e-3);
  return 1.0 / (kMemoryBoundFraction + (1 - kMemoryBoundFraction) / f);
}

void SimulatedGpu::Advance(absl::Time now) {
  if (now <= last_) return;
  const double dt = absl::ToDoubleSeconds(now - last_);
  const double power = PowerW();
  energy_j_ += power * dt;
  const double target =
      kAmbientC + kHeatRiseC * power / spec_.power_limit_max_w;
  temp_c_ = target + (temp_c_ - target) * std::exp(-dt / kThermalTimeConstantS);
  last_ = now;
}

absl::Status SimulatedGpu::LockClocks(int32_t min_mhz, int32_t max_mhz) {
  return absl::UnimplementedError(
      "simulated GPUs model power limits only, not locked clocks");
}

absl::Status SimulatedGpu::ResetClocks() { return absl::OkStatus(); }

absl::StatusOr<v1::DeviceSample> SimulatedGpu::Sample(absl::Time now) {
  Advance(now);
  v1::DeviceSample sample;
  sample.set_index(index_);
  sample.set_kind(v1::DEVICE_KIND_GPU);
  sample.set_power_w(PowerW());
  sample.set_energy_j(energy_j_);
  sample.set_temp_c(temp_c_);
  sample.set_utilization(busy_ ? 1.0 : 0.0);
  sample.set_memory_utilization(busy_ ? 0.6 : 0.0);
  sample.set_sm_clock_mhz(
      static_cast<int32_t>(std::lround(ClockFraction() * spec_.sm_clock_max_mhz)));
  sample.set_mem_clock_mhz(spec_.mem_clock_mhz);
  sample.set_power_cap_w(cap_w_);
  sample.set_source("simulated");
  return sample;
}

absl::Status SimulatedGpu::SetPowerLimit(double watts, absl::Time now) {
  if (!(watts >= spec_.power_limit_min_w && watts <= spec_.power_limit_max_w)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "GPU %d (%s): power limit %.1f W outside the allowed range [%.0f, %.0f] W",
        index_, spec_.model, watts, spec_.power_limit_min_w,
        spec_.power_limit_max_w));
  }
  Advance(now);
  cap_w_ = watts;
  return absl::OkStatus();
}

void SimulatedGpu::SetBusy(bool busy, absl::Time now) {
  Advance(now);
  busy_ = busy;
}

EstimatedCpu::EstimatedCpu(std::string procfs_root, double tdp_w, double idle_w)
    : procfs_root_(std::move(procfs_root)), tdp_w_(tdp_w), idle_w_(idle_w) {}

std::vector<v1::Device> EstimatedCpu::Describe() const {
  v1::Device device;
  device.set_index(0);
  device.set_kind(v1::DEVICE_KIND_CPU);
  device.set_model("CPU");
  device.set_power_limit_max_w(tdp_w_);
  device.set_power_limit_default_w(tdp_w_);
  device.set_idle_power_w(idle_w_);
  device.set_source("estimated");
  return {device};
}

absl::StatusOr<CpuReading> EstimatedCpu::Sample(absl::Time now) {
  CpuReading reading;
  absl::StatusOr<CpuTimes> times = ReadProcStat(procfs_root_);
  if (!times.ok()) return times.status();
  const double dt = last_times_ ? absl::ToDoubleSeconds(now - last_time_) : 0;
  absl::StatusOr<CpuTimesDelta> delta =
      last_times_ ? CpuTimesBetween(*last_times_, *times)
                  : absl::StatusOr<CpuTimesDelta>(CpuTimesDelta());
  // Baseline, no tick elapsed, or counters that went backwards: nothing says
  // the CPU was busy.
  utilization_ = delta.ok() ? delta->Utilization() : 0;
  if (delta.ok()) {
    reading.busy_seconds = static_cast<double>(delta->busy) / sysconf(_SC_CLK_TCK);
  }
  power_w_ = idle_w_ + (tdp_w_ - idle_w_) * utilization_;
  if (dt > 0) {
    reading.energy_j = power_w_ * dt;
    energy_j_ += reading.energy_j;
  }
  last_times_ = *times;
  last_time_ = now;

  v1::DeviceSample sample;
  sample.set_index(0);
  sample.set_kind(v1::DEVICE_KIND_CPU);
  sample.set_power_w(power_w_);
  sample.set_energy_j(energy_j_);
  sample.set_utilization(utilization_);
  // No limit is enforced on an estimate: power_cap_w stays 0.
  sample.set_source("estimated");
  sample.set_energy_integrated(true);
  reading.samples.push_back(sample);
  return reading;
}

}  // namespace joule
