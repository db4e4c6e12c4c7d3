#ifndef JOULE_AGENT_CPU_FIXTURE_TREE_H_
#define JOULE_AGENT_CPU_FIXTURE_TREE_H_

#include <cstdint>
#include <string>

namespace joule {

// Builds a fake sysfs/procfs tree in a fresh directory for tests:
//
//   FixtureTree tree("wrap");
//   tree.Rapl(0, "package-0", 1000, 262143328850)
//       .RaplConstraint(0, 0, "long_term", 125000000, 999424)
//       .Dram(0, 2, 500, 65712999613)
//       .Cpufreq(0, 800000, 3500000, 1200000, 800000, 3500000, "0 1");
//   RaplCpu::Create(tree.sys(), now);
//
// Layout mirrors the kernel's (see rapl.h, thermal.h, cpufreq.h); class
// entries are real directories rather than symlinks, which readers cannot
// tell apart. Mutators overwrite; the raw File/Remove/MakeDirectory calls
// plant the broken cases. Aborts the test binary on a filesystem error (a
// broken test environment, not a case under test).
class FixtureTree {
 public:
  // Creates (after removing any leftover) <TEST_TMPDIR>/<name>.
  explicit FixtureTree(const std::string& name);

  // The tree root; sys() is <root>/sys and proc() is <root>/proc.
  const std::string& root() const { return root_; }
  std::string sys() const { return root_ + "/sys"; }
  std::string proc() const { return root_ + "/proc"; }

  // sys/class/powercap/intel-rapl:<zone> with name, energy_uj,
  // max_energy_range_uj.
  FixtureTree& Rapl(int zone, const std::string& name, uint64_t energy_uj,
                    uint64_t max_energy_range_uj);
  // sys/class/powercap/intel-rapl:<zone>:<sub> named `name`.
  FixtureTree& RaplSubzone(int zone, int sub, const std::string& name,
                           uint64_t energy_uj, uint64_t max_energy_range_uj);
  // A "dram" subzone.
  FixtureTree& Dram(int zone, int sub, uint64_t energy_uj,
                    uint64_t max_energy_range_uj);
  // constraint_<k>_{name,power_limit_uw,time_window_us} of zone
  // "intel-rapl:<zone>" (or of a subzone: zone_entry "intel-rapl:0:2").
  FixtureTree& RaplConstraint(int zone, int k, const std::string& name,
                              uint64_t power_limit_uw, uint64_t time_window_us);
  FixtureTree& RaplConstraintOf(const std::string& zone_entry, int k,
                                const std::string& name,
                                uint64_t power_limit_uw,
                                uint64_t time_window_us);
  // Sets energy_uj of "intel-rapl:<zone>" or of any zone entry.
  FixtureTree& Energy(int zone, uint64_t energy_uj);
  FixtureTree& EnergyOf(const std::string& zone_entry, uint64_t energy_uj);

  // sys/class/hwmon/hwmon<n>/name.
  FixtureTree& Hwmon(int n, const std::string& chip);
  // temp<i>_label and temp<i>_input of hwmon<n>.
  FixtureTree& HwmonTemp(int n, int i, const std::string& label,
                         int64_t millidegrees);

  // sys/class/thermal/thermal_zone<n>/{type,temp}.
  FixtureTree& ThermalZone(int n, const std::string& type,
                           int64_t millidegrees);

  // sys/devices/system/cpu/cpufreq/policy<n>/..., all in kHz.
  FixtureTree& Cpufreq(int policy, uint64_t scaling_min_khz,
                       uint64_t scaling_max_khz, uint64_t scaling_cur_khz,
                       uint64_t cpuinfo_min_khz, uint64_t cpuinfo_max_khz,
                       const std::string& affected_cpus);

  // proc/stat with `contents` as is.
  FixtureTree& ProcStat(const std::string& contents);

  // Raw edits, paths relative to root(): write a file (creating parents),
  // remove a file or directory tree, or put an empty directory where a file
  // was (reading it then fails with EISDIR).
  FixtureTree& File(const std::string& relpath, const std::string& contents);
  FixtureTree& Remove(const std::string& relpath);
  FixtureTree& MakeDirectory(const std::string& relpath);

  std::string Path(const std::string& relpath) const;
  // The file's contents; "<missing>" when it cannot be read.
  std::string Contents(const std::string& relpath) const;

 private:
  std::string root_;
};

}  // namespace joule

#endif  // JOULE_AGENT_CPU_FIXTURE_TREE_H_
