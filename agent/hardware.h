#ifndef JOULE_AGENT_HARDWARE_H_
#define JOULE_AGENT_HARDWARE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/cpu/cpufreq.h"
#include "agent/cpu/proc_stat.h"
#include "agent/cpu/rapl.h"
#include "agent/devices.h"
#include "joule/v1/node.pb.h"

namespace joule {

struct HardwareOptions {
  std::string node_name;
  std::string sysfs_root = "/sys";
  std::string procfs_root = "/proc";
  std::string nvml_library = "libnvidia-ml.so.1";
  // MODEL:COUNT[,...]: simulated GPUs instead of NVML (only when asked).
  std::string simulate;
  // For the CPU estimate without RAPL, and the idle part of RAPL energy.
  double cpu_tdp_w = 65;
  double cpu_idle_w = 10;
};

// Everything the agent measures and actuates on this node.
struct Hardware {
  std::vector<std::unique_ptr<GpuDevice>> gpus;
  std::unique_ptr<CpuSource> cpu;
  // Writable CPU settings (RAPL package limits, cpufreq maxima); they point
  // into `cpu` and `cpufreq`, which must outlive them.
  std::map<std::string, CpuSetting> cpu_settings;
  std::unique_ptr<CpufreqControl> cpufreq;
  // What was found, missing or broken, by source name.
  std::vector<v1::SourceStatus> sources;
};

// Finds every real source on the node, in order:
//  1. GPUs: simulated ones when `simulate` is set; otherwise NVML through
//     dlopen of `nvml_library` (a missing library is the normal "no NVIDIA
//     GPU" case: source absent).
//  2. CPU power: RAPL packages and DRAM under `sysfs_root`; where there is
//     none (VMs), or it cannot be read (no permission), the estimate from
//     utilization, labelled "estimated".
//  3. cpufreq policies, as CPU settings; hwmon/thermal temperatures go with
//     RAPL package samples.
// A source that is missing or broken is recorded in `sources`, never fatal;
// only a malformed `simulate` is an error.
absl::StatusOr<Hardware> DiscoverHardware(const HardwareOptions& options,
                                          absl::Time now);

// "V100:4,A40:2" -> simulated GPUs, indices in order.
absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> ParseSimulate(
    const std::string& text, const std::string& node, absl::Time now);

// CPU power from RAPL (package and DRAM domains) with the host's busy CPU
// time from /proc/stat. The idle part of the energy is the configured idle
// power per package. Not thread-safe.
class RaplCpuSource : public CpuSource {
 public:
  RaplCpuSource(std::unique_ptr<RaplCpu> rapl, std::string procfs_root,
                double idle_w_per_package);

  std::string name() const override { return "rapl"; }
  std::vector<v1::Device> Describe() const override { return rapl_->Describe(); }
  double idle_power_w() const override;
  absl::StatusOr<CpuReading> Sample(absl::Time now) override;

  RaplCpu& rapl() { return *rapl_; }

 private:
  std::unique_ptr<RaplCpu> rapl_;
  const std::string procfs_root_;
  const double idle_w_per_package_;
  // Cumulative energy per (kind, index) at the previous sample.
  std::map<std::pair<int, int>, double> last_energy_j_;
  absl::optional<CpuTimes> last_times_;
};

}  // namespace joule

#endif  // JOULE_AGENT_HARDWARE_H_
