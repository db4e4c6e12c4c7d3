#ifndef JOULE_AGENT_CPU_CPUFREQ_H_
#define JOULE_AGENT_CPU_CPUFREQ_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/cpu/sysfs.h"

namespace joule {

// One cpufreq policy: a set of CPUs that share a frequency.
struct CpufreqPolicy {
  // The N of policyN.
  int id = 0;
  std::string path;
  // affected_cpus: the online CPUs this policy drives (empty while all its
  // CPUs are offline).
  std::vector<int> cpus;
  // The hardware limits, kHz.
  uint64_t cpuinfo_min_khz = 0;
  uint64_t cpuinfo_max_khz = 0;
};

// A policy's frequencies as read now, all in kHz.
struct CpufreqState {
  uint64_t scaling_min_khz = 0;
  uint64_t scaling_max_khz = 0;
  uint64_t scaling_cur_khz = 0;
  uint64_t cpuinfo_min_khz = 0;
  uint64_t cpuinfo_max_khz = 0;
};

// Reads and caps CPU frequencies through the cpufreq policy interface.
//
// Layout (Linux kernel docs: admin-guide/pm/cpufreq.rst "Policy Interface in
// sysfs", cpu-freq/cpufreq-stats): /sys/devices/system/cpu/cpufreq/policyN/
// with scaling_min_freq, scaling_max_freq (rw), scaling_cur_freq,
// cpuinfo_min_freq, cpuinfo_max_freq, all in kHz, and affected_cpus, a
// space-separated CPU list.
//
// SetMaxFrequency writes scaling_max_freq after checking it against the
// policy's [cpuinfo_min_freq, cpuinfo_max_freq]; the first change of a policy
// saves the original value, and Restore writes every saved value back.
// Writing needs root.
//
// Not thread-safe; owned by the agent's actuator loop.
class CpufreqControl {
 public:
  // Scans `<sysfs_root>/devices/system/cpu/cpufreq/`. An absent directory
  // (no cpufreq driver, most VMs) gives no policies, not an error. A policy
  // that cannot be described (cpuinfo limits or affected_cpus missing or
  // malformed, min > max) is left out and listed in `skipped` when given.
  static absl::StatusOr<CpufreqControl> Discover(
      const std::string& sysfs_root,
      std::vector<absl::Status>* skipped = nullptr);

  explicit CpufreqControl(std::vector<CpufreqPolicy> policies);
  CpufreqControl(const CpufreqControl&) = delete;
  CpufreqControl& operator=(const CpufreqControl&) = delete;
  CpufreqControl(CpufreqControl&&) = default;
  CpufreqControl& operator=(CpufreqControl&&) = default;

  // Sorted by id.
  const std::vector<CpufreqPolicy>& policies() const { return policies_; }

  // NOT_FOUND for an unknown policy id; otherwise every file read now.
  absl::StatusOr<CpufreqState> Read(int policy) const;

  // OUT_OF_RANGE, naming the range, outside [cpuinfo_min, cpuinfo_max].
  absl::Status SetMaxFrequency(int policy, uint64_t khz);

  // Writes back every saved original; the ones restored are forgotten, the
  // ones that failed are kept for a later Restore and named in the error.
  absl::Status Restore();

  bool HasChangedLimits() const { return !originals_.empty(); }

 private:
  absl::StatusOr<const CpufreqPolicy*> Find(int policy) const;

  std::vector<CpufreqPolicy> policies_;
  // Policy id -> scaling_max_freq before the first change.
  SysfsOriginals originals_;
};

// Parses a cpufreq CPU list such as affected_cpus ("0 1 2 3"); DATA_LOSS
// naming `source` on anything but non-negative integers separated by
// whitespace. An empty list is valid: a policy whose CPUs are all offline.
absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text,
                                              const std::string& source);

}  // namespace joule

#endif  // JOULE_AGENT_CPU_CPUFREQ_H_
