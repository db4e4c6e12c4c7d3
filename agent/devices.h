#ifndef JOULE_AGENT_DEVICES_H_
#define JOULE_AGENT_DEVICES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/cpu/proc_stat.h"
#include "common/device_catalog.h"
#include "joule/v1/node.pb.h"

namespace joule {

// One GPU as the agent sees it: telemetry and the power-limit and clock
// actuators. Implementations: SimulatedGpu here, NvmlGpu (agent/nvml).
// Not thread-safe; owned by the Agent.
class GpuDevice {
 public:
  virtual ~GpuDevice() = default;
  virtual v1::Device Describe() const = 0;
  // Reads the device at `now`; energy_j is cumulative since the agent
  // started watching the device. An error (device gone, driver error) is
  // reported, never a made-up sample.
  virtual absl::StatusOr<v1::DeviceSample> Sample(absl::Time now) = 0;
  // OUT_OF_RANGE, naming the allowed range, outside the device's limits.
  virtual absl::Status SetPowerLimit(double watts, absl::Time now) = 0;
  // The power limit in force as last read or set.
  virtual double power_limit_w() const = 0;
  // Locks the SM clock into [min_mhz, max_mhz]; ResetClocks undoes it.
  // UNIMPLEMENTED where the device cannot.
  virtual absl::Status LockClocks(int32_t min_mhz, int32_t max_mhz) = 0;
  virtual absl::Status ResetClocks() = 0;
  // Whether a task is running on the device. Real devices see their load
  // directly and ignore this; simulated devices need it.
  virtual void SetBusy(bool busy, absl::Time now) = 0;
  // Relative throughput in (0, 1] at the current cap, for simulated devices
  // (passed to tasks as the `device_speed` hint); nullopt for real devices.
  virtual absl::optional<double> SimulatedSpeed() const = 0;
};

// A simulated GPU with a plausible physical model (see README, "Simulated
// devices"):
//  1. A busy device would draw P_demand = idle + 0.9 * (max_limit - idle)
//     uncapped; under a cap it draws P = min(cap, P_demand); idle it draws
//     its idle power.
//  2. Dynamic power scales roughly with f^3 (P ~ f V^2 with V ~ f in the DVFS
//     range), so the relative SM clock is f = ((P - idle) / (P_demand -
//     idle))^(1/3), never below the model's minimum clock.
//  3. Throughput saturates because part of each step is memory-bound:
//     speed = 1 / (m + (1 - m) / f), m = 0.35.
//  4. Temperature follows a first-order model toward 30 C + 55 C * P / max
//     with a 20 s time constant.
// Energy is integrated exactly between samples (power is constant between
// state changes, which also integrate).
class SimulatedGpu : public GpuDevice {
 public:
  SimulatedGpu(int32_t index, const GpuModelSpec& spec, const std::string& node,
               absl::Time now);

  v1::Device Describe() const override;
  absl::StatusOr<v1::DeviceSample> Sample(absl::Time now) override;
  absl::Status SetPowerLimit(double watts, absl::Time now) override;
  double power_limit_w() const override { return cap_w_; }
  absl::Status LockClocks(int32_t min_mhz, int32_t max_mhz) override;
  absl::Status ResetClocks() override;
  void SetBusy(bool busy, absl::Time now) override;
  absl::optional<double> SimulatedSpeed() const override;

  // The model's steady-state figures, exposed for tests and docs.
  double PowerW() const;
  double ClockFraction() const;

 private:
  void Advance(absl::Time now);

  const int32_t index_;
  const GpuModelSpec spec_;
  const std::string uuid_;
  double cap_w_;
  bool busy_ = false;
  absl::Time last_;
  double energy_j_ = 0;
  double temp_c_ = 30;
};

// A writable CPU setting the agent may change and must put back, in its
// own unit: a RAPL package power limit ("cpu/package0/power_limit_uw", µW)
// or a cpufreq policy's scaling_max_freq ("cpu/policy0/max_freq_khz", kHz).
struct CpuSetting {
  std::function<absl::StatusOr<double>()> read;
  std::function<absl::Status(double)> write;
  // The hardware's own value, for when the original is lost (a corrupt caps
  // journal): cpufreq's cpuinfo_max_freq. Empty where there is none (RAPL).
  std::function<absl::StatusOr<double>()> hardware_default;
};

// One reading of a node's CPU power source.
struct CpuReading {
  // One sample per CPU package (and DRAM domain); energy_j cumulative.
  std::vector<v1::DeviceSample> samples;
  // Energy of all domains together since the previous reading, J.
  double energy_j = 0;
  // CPU-seconds all processes spent busy since the previous reading, from
  // /proc/stat: the denominator of each task's CPU-time share.
  double busy_seconds = 0;
  // Domains that failed this time (the reading is partial, not wrong).
  std::vector<absl::Status> errors;
};

// The node's CPU (and DRAM) power: measured through RAPL where the kernel
// exposes it, otherwise estimated from utilization. Not thread-safe.
class CpuSource {
 public:
  virtual ~CpuSource() = default;
  // "rapl" or "estimated", as shown in samples and source states.
  virtual std::string name() const = 0;
  virtual std::vector<v1::Device> Describe() const = 0;
  // Idle power of all domains together: the part of CPU energy that goes
  // to the static pool rather than to the tasks using the CPU.
  virtual double idle_power_w() const = 0;
  // An error means nothing could be read; partial failures are in
  // CpuReading::errors.
  virtual absl::StatusOr<CpuReading> Sample(absl::Time now) = 0;
};

// Estimates CPU package power from utilization where no RAPL counter exists
// (VMs, containers): P = idle + (tdp - idle) * utilization, utilization from
// the busy share of /proc/stat's aggregate cpu line between two samples.
// Labelled "estimated" everywhere it shows. Not thread-safe.
class EstimatedCpu : public CpuSource {
 public:
  EstimatedCpu(std::string procfs_root, double tdp_w, double idle_w);

  std::string name() const override { return "estimated"; }
  std::vector<v1::Device> Describe() const override;
  double idle_power_w() const override { return idle_w_; }
  // Reads /proc/stat. A malformed or missing /proc/stat is an error, never
  // a crash. The first reading only sets the baseline (zero energy).
  absl::StatusOr<CpuReading> Sample(absl::Time now) override;

 private:
  const std::string procfs_root_;
  const double tdp_w_;
  const double idle_w_;
  absl::optional<CpuTimes> last_times_;
  absl::Time last_time_;
  double energy_j_ = 0;
  double power_w_ = 0;
  double utilization_ = 0;
};

}  // namespace joule

#endif  // JOULE_AGENT_DEVICES_H_
