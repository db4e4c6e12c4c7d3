// Fuzz target: the agent's sysfs and procfs readers end to end
// (agent/cpu/rapl.h, thermal.h, cpufreq.h, proc_stat.h and the estimated CPU
// of agent/devices.h): discovery and sampling over a tree of files whose
// contents come from the input.
//
// Input: file contents separated by NUL bytes, filling the slots of kSlots
// in order. A slot the input does not reach is an absent file; a slot that
// is exactly "\x7f" is a directory where the file should be (reads fail
// with EISDIR). Slots 22 and 26 name an extra powercap zone and an extra
// hwmon device (a name with '/', "." or "..", or longer than NAME_MAX, is
// left out); the slots after them are those entries' files. The last two
// slots are second readings of the RAPL counter and /proc/stat, written
// between two samples.
//
// Checked, besides never crashing: what the readers report is physically
// possible: finite, non-negative power and energy, temperatures within
// [-273.15, 200] C, cpufreq limits with min <= max, a CPU busy fraction in
// [0, 1].

#include <sys/stat.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/cpu/cpufreq.h"
#include "agent/cpu/proc_stat.h"
#include "agent/cpu/rapl.h"
#include "agent/cpu/thermal.h"
#include "agent/devices.h"
#include "fuzz/fuzz_support.h"
#include "joule/v1/node.pb.h"

namespace joule::fuzz {
namespace {

constexpr char kRapl[] = "sys/class/powercap/intel-rapl:0/";
constexpr char kDram[] = "sys/class/powercap/intel-rapl:0:0/";
constexpr char kHwmon[] = "sys/class/hwmon/hwmon0/";
constexpr char kZone[] = "sys/class/thermal/thermal_zone0/";
constexpr char kPolicy[] = "sys/devices/system/cpu/cpufreq/policy0/";

// Paths relative to the tree's root; "@zone/" and "@hwmon/" stand for the
// extra entries named by slots 22 and 26.
const std::vector<std::string>& Slots() {
  static const auto* slots = new std::vector<std::string>{
      absl::StrCat(kRapl, "name"),                          // 0
      absl::StrCat(kRapl, "energy_uj"),                     // 1
      absl::StrCat(kRapl, "max_energy_range_uj"),           // 2
      absl::StrCat(kRapl, "constraint_0_name"),             // 3
      absl::StrCat(kRapl, "constraint_0_power_limit_uw"),   // 4
      absl::StrCat(kRapl, "constraint_0_time_window_us"),   // 5
      absl::StrCat(kRapl, "constraint_0_max_power_uw"),     // 6
      absl::StrCat(kDram, "name"),                          // 7
      absl::StrCat(kDram, "energy_uj"),                     // 8
      absl::StrCat(kDram, "max_energy_range_uj"),           // 9
      absl::StrCat(kHwmon, "name"),                         // 10
      absl::StrCat(kHwmon, "temp1_label"),                  // 11
      absl::StrCat(kHwmon, "temp1_input"),                  // 12
      absl::StrCat(kZone, "type"),                          // 13
      absl::StrCat(kZone, "temp"),                          // 14
      absl::StrCat(kPolicy, "affected_cpus"),               // 15
      absl::StrCat(kPolicy, "cpuinfo_min_freq"),            // 16
      absl::StrCat(kPolicy, "cpuinfo_max_freq"),            // 17
      absl::StrCat(kPolicy, "scaling_min_freq"),            // 18
      absl::StrCat(kPolicy, "scaling_max_freq"),            // 19
      absl::StrCat(kPolicy, "scaling_cur_freq"),            // 20
      "proc/stat",                                          // 21
      "",  // 22: the extra powercap zone's entry name
      "@zone/name",                                         // 23
      "@zone/energy_uj",                                    // 24
      "@zone/max_energy_range_uj",                          // 25
      "",  // 26: the extra hwmon device's entry name
      "@hwmon/name",                                        // 27
      "@hwmon/temp2_label",                                 // 28
      "@hwmon/temp2_input",                                 // 29
      "proc/stat",                                          // 30: second reading
      absl::StrCat(kRapl, "energy_uj"),                     // 31: second reading
  };
  return *slots;
}
constexpr size_t kFirstSecondReading = 30;

bool UsableName(absl::string_view name) {
  // NAME_MAX: a longer name cannot be created, so the tree cannot hold it.
  return !name.empty() && name.size() <= NAME_MAX && name != "." && name != ".." &&
         name.find('/') == absl::string_view::npos &&
         name.find('\0') == absl::string_view::npos;
}

// Writes `contents` to `rel` under `root`: a directory for "\x7f" (unless
// the path exists); a path that is a directory already stays one.
void Plant(const std::string& root, const std::string& rel, absl::string_view contents) {
  const std::string path = absl::StrCat(root, "/", rel);
  struct stat st;
  const bool exists = stat(path.c_str(), &st) == 0;
  if (contents == "\x7f") {
    // A directory where a file belongs (a second reading keeps the file).
    if (!exists) WriteFileOrDie(path + "/.keep", "");
    return;
  }
  if (exists && S_ISDIR(st.st_mode)) return;  // stays one
  WriteFileOrDie(path, contents);
}

bool SaneTemp(double temp_c) {
  return std::isfinite(temp_c) && temp_c >= -273.15 && temp_c <= 200;
}

void CheckSamples(const std::vector<v1::DeviceSample>& samples) {
  for (const v1::DeviceSample& sample : samples) {
    FUZZ_CHECK(std::isfinite(sample.power_w()) && sample.power_w() >= 0);
    FUZZ_CHECK(std::isfinite(sample.energy_j()) && sample.energy_j() >= 0);
    FUZZ_CHECK(sample.temp_c() == 0 || SaneTemp(sample.temp_c()));
    FUZZ_CHECK(std::isfinite(sample.power_cap_w()) && sample.power_cap_w() >= 0);
    FUZZ_CHECK(sample.utilization() >= 0 && sample.utilization() <= 1);
  }
}

void CheckCpuReading(const absl::StatusOr<CpuReading>& reading) {
  if (!reading.ok()) return;
  CheckSamples(reading->samples);
  FUZZ_CHECK(std::isfinite(reading->energy_j) && reading->energy_j >= 0);
  FUZZ_CHECK(std::isfinite(reading->busy_seconds) && reading->busy_seconds >= 0);
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule;        // NOLINT: a fuzz target's one function.
  using namespace joule::fuzz;  // NOLINT
  const std::vector<std::string>& slots = Slots();
  std::vector<absl::string_view> pieces;
  if (size > 0) {
    pieces = absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size),
                            '\0');
  }
  if (pieces.size() > slots.size()) pieces.resize(slots.size());

  const std::string root = FreshDir();
  const std::string sys = root + "/sys";
  const std::string proc = root + "/proc";
  std::string zone_entry;
  std::string hwmon_entry;
  for (size_t i = 0; i < pieces.size() && i < kFirstSecondReading; ++i) {
    std::string rel = slots[i];
    if (i == 22 || i == 26) {
      if (UsableName(pieces[i])) (i == 22 ? zone_entry : hwmon_entry) = std::string(pieces[i]);
      continue;
    }
    if (absl::StartsWith(rel, "@zone/")) {
      if (zone_entry.empty()) continue;
      rel = absl::StrCat("sys/class/powercap/", zone_entry, rel.substr(5));
    } else if (absl::StartsWith(rel, "@hwmon/")) {
      if (hwmon_entry.empty()) continue;
      rel = absl::StrCat("sys/class/hwmon/", hwmon_entry, rel.substr(6));
    }
    Plant(root, rel, pieces[i]);
  }
  WriteFileOrDie(sys + "/class/.keep", "");

  const absl::Time start = absl::FromUnixSeconds(1767225600);
  std::vector<absl::Status> skipped;
  DiscoverRapl(sys, &skipped).IgnoreError();

  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(sys, &skipped);
  if (thermal.ok()) {
    const ThermalReading reading = thermal->Read();
    for (const auto& [package, temp_c] : reading.package_temp_c) {
      FUZZ_CHECK(SaneTemp(temp_c));
    }
    for (const ZoneTemp& zone : reading.zones) FUZZ_CHECK(SaneTemp(zone.temp_c));
    absl::StatusOr<double> package0 = thermal->ReadPackageTempC(0);
    if (package0.ok()) FUZZ_CHECK(SaneTemp(*package0));
  }

  absl::StatusOr<CpufreqControl> cpufreq = CpufreqControl::Discover(sys, &skipped);
  if (cpufreq.ok()) {
    for (const CpufreqPolicy& policy : cpufreq->policies()) {
      FUZZ_CHECK(policy.cpuinfo_min_khz <= policy.cpuinfo_max_khz);
      cpufreq->Read(policy.id).IgnoreError();
    }
  }

  absl::StatusOr<std::unique_ptr<RaplCpu>> rapl = RaplCpu::Create(sys, start);
  EstimatedCpu estimated(proc, /*tdp_w=*/100, /*idle_w=*/20);
  ReadProcStat(proc).IgnoreError();
  CheckCpuReading(estimated.Sample(start));
  for (size_t i = kFirstSecondReading; i < pieces.size(); ++i) {
    Plant(root, slots[i], pieces[i]);
  }
  if (rapl.ok()) {
    (*rapl)->Describe();
    absl::StatusOr<std::vector<v1::DeviceSample>> samples =
        (*rapl)->Sample(start + absl::Seconds(1));
    if (samples.ok()) CheckSamples(*samples);
    (*rapl)->Status();
  }
  CheckCpuReading(estimated.Sample(start + absl::Seconds(1)));
  RemoveTree(root);
  return 0;
}
