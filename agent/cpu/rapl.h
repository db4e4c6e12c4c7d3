#ifndef JOULE_AGENT_CPU_RAPL_H_
#define JOULE_AGENT_CPU_RAPL_H_

// CPU package and DRAM energy from RAPL through the Linux powercap class.
//
// Layout (Linux kernel docs: power/powercap/powercap.rst and
// ABI/testing/sysfs-class-powercap): /sys/class/powercap/ holds one entry per
// power zone, flat: "intel-rapl:N" for top-level zones and "intel-rapl:N:M"
// for their subzones (AMD's RAPL driver uses the same "intel-rapl" names).
// Each zone has
//   name                          "package-P", "dram", "core", "uncore", "psys"
//   energy_uj                     energy counter, microjoules
//   max_energy_range_uj           the counter's range, microjoules
//   constraint_K_name             "long_term", "short_term", ... (optional)
//   constraint_K_power_limit_uw   the limit, microwatts (rw)
//   constraint_K_time_window_us   its averaging window, microseconds
//   constraint_K_max_power_uw     the largest allowed limit (optional)
//   constraint_K_min_power_uw     the smallest allowed limit (optional)
//
// Counter range and wraparound: the RAPL driver reports max_energy_range_uj
// as the energy-status mask (all counter bits set) converted to microjoules,
// so energy_uj takes values in [0, max_energy_range_uj] and the value after
// max_energy_range_uj is 0. Between two reads prev and cur:
//   cur >= prev: delta = cur - prev
//   cur <  prev: delta = (max_energy_range_uj - prev) + cur + 1   (one wrap)
// At most one wrap can be detected, so reads must come more often than the
// counter's wrap period (max_energy_range_uj / power: about 20 minutes for a
// 262 kJ range at 200 W). A value above max_energy_range_uj is DATA_LOSS.
//
// Privileges: since Linux 5.10 (commit 949dd0104c49, "powercap: restrict
// energy meter to root access", also backported to stable kernels, for
// CVE-2020-8694) energy_uj is readable by root only; writing power limits
// always needs root.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "agent/cpu/sysfs.h"
#include "agent/cpu/thermal.h"
#include "joule/v1/node.pb.h"

namespace joule {

struct RaplConstraint {
  // The K of constraint_K_*.
  int index = 0;
  // constraint_K_name; empty when the zone does not name it.
  std::string name;
};

struct RaplDomain {
  // The zone directory, e.g. "/sys/class/powercap/intel-rapl:0:2".
  std::string path;
  // The zone's entry name, e.g. "intel-rapl:0:2".
  std::string zone;
  // The zone's `name`: "package-0", "dram".
  std::string name;
  // CPU package (socket) index: P of the package zone "package-P" or of the
  // package a dram subzone belongs to.
  int package = 0;
  bool dram = false;
  uint64_t max_energy_range_uj = 0;
  // Sorted by index.
  std::vector<RaplConstraint> constraints;
};

// One constraint's settings as read now.
struct RaplPowerLimit {
  int constraint = 0;
  std::string name;
  uint64_t power_limit_uw = 0;
  // Absent when the zone has no such file.
  absl::optional<uint64_t> time_window_us;
  absl::optional<uint64_t> max_power_uw;
  absl::optional<uint64_t> min_power_uw;
};

// Finds the package zones ("package-P") and their "dram" subzones under
// `<sysfs_root>/class/powercap/`. Other zones (core, uncore, psys,
// intel-rapl-mmio) are ignored. An absent powercap directory gives an empty
// list, not an error; an existing one that cannot be listed is an error.
// A zone that cannot be described (name or max_energy_range_uj missing or
// malformed) is left out and, when `skipped` is given, its error listed there.
// Sorted by package, package zone before its dram zone.
absl::StatusOr<std::vector<RaplDomain>> DiscoverRapl(
    const std::string& sysfs_root,
    std::vector<absl::Status>* skipped = nullptr);

// The joules between two counter values under the wraparound rule above;
// DATA_LOSS (naming `source`) when either exceeds max_energy_range_uj.
absl::StatusOr<uint64_t> RaplDeltaUj(uint64_t prev_uj, uint64_t cur_uj,
                                     uint64_t max_energy_range_uj,
                                     const std::string& source);

// Reads RAPL energy counters as deltas and sets and restores power limits.
// Domains are addressed by their index in domains().
//
// Not thread-safe; owned by the agent's sampling loop.
class RaplReader {
 public:
  explicit RaplReader(std::vector<RaplDomain> domains);
  RaplReader(const RaplReader&) = delete;
  RaplReader& operator=(const RaplReader&) = delete;
  RaplReader(RaplReader&&) = default;
  RaplReader& operator=(RaplReader&&) = default;

  const std::vector<RaplDomain>& domains() const { return domains_; }

  // The raw counter, checked against the domain's range.
  absl::StatusOr<uint64_t> ReadEnergyUj(size_t domain) const;

  // The joules since the previous successful ReadJoules of this domain; 0 on
  // the first (which only sets the baseline; see has_baseline). A failed read
  // keeps the previous baseline, so the next good read covers the gap.
  absl::StatusOr<double> ReadJoules(size_t domain);
  bool has_baseline(size_t domain) const;

  // Every constraint of the domain, read now.
  absl::StatusOr<std::vector<RaplPowerLimit>> PowerLimits(size_t domain) const;
  // One constraint's power limit, read now.
  absl::StatusOr<uint64_t> PowerLimitUw(size_t domain, int constraint) const;

  // Writes constraint_K_power_limit_uw. The first change of a limit saves its
  // original value for Restore (a limit whose original cannot be read is not
  // changed). INVALID_ARGUMENT for 0 or an unknown domain or constraint;
  // OUT_OF_RANGE outside the constraint's [min_power_uw, max_power_uw] where
  // the zone states them.
  absl::Status SetPowerLimit(size_t domain, int constraint, uint64_t uw);

  // Writes back every original value saved by SetPowerLimit. Tries all of
  // them; the ones restored are forgotten, the ones that failed are kept for a
  // later Restore and reported in the returned error.
  absl::Status Restore();

  // Whether any limit is changed and not yet restored.
  bool HasChangedLimits() const { return !originals_.empty(); }

 private:
  absl::Status CheckDomain(size_t domain) const;
  absl::Status CheckConstraint(size_t domain, int constraint) const;
  std::string ConstraintPath(size_t domain, int constraint,
                             const char* attribute) const;

  std::vector<RaplDomain> domains_;
  // Per domain: the last good counter value, if any.
  std::vector<absl::optional<uint64_t>> last_uj_;
  // (domain, constraint) -> the limit in force before the first change.
  SysfsOriginals originals_;
};

// A domain that failed in the last RaplCpu::Sample.
struct RaplDomainError {
  // The zone entry ("intel-rapl:0") or, for a temperature, the sensor source.
  std::string zone;
  absl::Status status;
};

// CPU packages and DRAM as Joule devices, measured by RAPL.
//
// Algorithm, per Sample(now):
//  1. For each domain, read the counter and convert the change since the
//     domain's last good read to joules (one wraparound handled).
//  2. power_w = joules / seconds since that last good read; energy_j adds the
//     joules to the domain's running total (0 when the agent started).
//  3. A domain whose read fails is left out of the result and listed in
//     last_errors(); the others are reported, so one broken file degrades the
//     source rather than killing it. Only when every domain fails is Sample
//     an error.
//  4. Package samples carry the hwmon package temperature and the long-term
//     limit in force (power_cap_w) when those can be read; a failure there is
//     listed in last_errors() but keeps the power sample.
// Create() takes the baseline reading, so the first Sample already has power.
//
// Not thread-safe; owned by the agent's sampling loop.
class RaplCpu {
 public:
  // Discovers the domains and takes the baseline reading. NOT_FOUND when the
  // node has no RAPL package domain (the source is absent); when packages
  // exist but none of their counters can be read, the first read error's code
  // (PERMISSION_DENIED for energy_uj when not root) with every error in the
  // message. Either way the caller falls back to EstimatedCpu.
  static absl::StatusOr<std::unique_ptr<RaplCpu>> Create(
      const std::string& sysfs_root, absl::Time now);

  RaplCpu(std::vector<RaplDomain> domains, CpuThermal thermal, absl::Time now);

  // One CPU device per package, one MEMORY device per dram domain.
  std::vector<v1::Device> Describe() const;

  absl::StatusOr<std::vector<v1::DeviceSample>> Sample(absl::Time now);

  // The failures of the last Sample (empty when all went well).
  const std::vector<RaplDomainError>& last_errors() const {
    return last_errors_;
  }

  // Zones discovery could not describe (and a failed thermal scan); they
  // keep the source DEGRADED.
  const std::vector<absl::Status>& discovery_errors() const {
    return discovery_errors_;
  }

  // The "rapl" source: OK, or DEGRADED naming the discovery errors and the
  // last Sample's errors; `errors` counts every failure since creation.
  v1::SourceStatus Status() const;

  RaplReader& reader() { return reader_; }
  const CpuThermal& thermal() const { return thermal_; }

 private:
  struct DomainState {
    // The time of the last good read that closed a power interval.
    absl::Time last_time;
    // Joules read since last_time.
    double pending_j = 0;
    double energy_j = 0;
    double power_w = 0;
  };

  RaplReader reader_;
  CpuThermal thermal_;
  std::vector<DomainState> state_;
  // Limits as found at creation, for power_limit_default_w.
  std::vector<std::vector<RaplPowerLimit>> initial_limits_;
  std::vector<RaplDomainError> last_errors_;
  std::vector<absl::Status> discovery_errors_;
  int64_t error_count_ = 0;
};

}  // namespace joule

#endif  // JOULE_AGENT_CPU_RAPL_H_
