#include "agent/cpu/fixture_tree.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what, const std::error_code& ec) {
  std::fprintf(stderr, "FixtureTree: %s: %s\n", what.c_str(),
               ec.message().c_str());
  std::abort();
}

std::string Zone(int zone) { return absl::StrCat("intel-rapl:", zone); }

std::string PowercapDir(const std::string& entry) {
  return absl::StrCat("sys/class/powercap/", entry);
}

}  // namespace

FixtureTree::FixtureTree(const std::string& name)
    : root_(absl::StrCat(::testing::TempDir(), "/joule_fixture_", name)) {
  std::error_code ec;
  fs::remove_all(root_, ec);
  if (ec) Die("remove " + root_, ec);
  fs::create_directories(root_, ec);
  if (ec) Die("create " + root_, ec);
}

std::string FixtureTree::Path(const std::string& relpath) const {
  return root_ + "/" + relpath;
}

FixtureTree& FixtureTree::File(const std::string& relpath,
                               const std::string& contents) {
  const fs::path path = Path(relpath);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) Die("create parents of " + path.string(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out)
    Die("write " + path.string(), std::make_error_code(std::errc::io_error));
  return *this;
}

FixtureTree& FixtureTree::Remove(const std::string& relpath) {
  std::error_code ec;
  fs::remove_all(Path(relpath), ec);
  if (ec) Die("remove " + Path(relpath), ec);
  return *this;
}

FixtureTree& FixtureTree::MakeDirectory(const std::string& relpath) {
  Remove(relpath);
  std::error_code ec;
  fs::create_directories(Path(relpath), ec);
  if (ec) Die("create " + Path(relpath), ec);
  return *this;
}

std::string FixtureTree::Contents(const std::string& relpath) const {
  std::ifstream in(Path(relpath), std::ios::binary);
  if (!in) return "<missing>";
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

FixtureTree& FixtureTree::Rapl(int zone, const std::string& name,
                               uint64_t energy_uj,
                               uint64_t max_energy_range_uj) {
  const std::string dir = PowercapDir(Zone(zone));
  File(dir + "/name", name + "\n");
  File(dir + "/energy_uj", absl::StrCat(energy_uj, "\n"));
  File(dir + "/max_energy_range_uj", absl::StrCat(max_energy_range_uj, "\n"));
  return *this;
}

FixtureTree& FixtureTree::RaplSubzone(int zone, int sub,
                                      const std::string& name,
                                      uint64_t energy_uj,
                                      uint64_t max_energy_range_uj) {
  const std::string dir =
      PowercapDir(absl::StrCat("intel-rapl:", zone, ":", sub));
  File(dir + "/name", name + "\n");
  File(dir + "/energy_uj", absl::StrCat(energy_uj, "\n"));
  File(dir + "/max_energy_range_uj", absl::StrCat(max_energy_range_uj, "\n"));
  return *this;
}

FixtureTree& FixtureTree::Dram(int zone, int sub, uint64_t energy_uj,
                               uint64_t max_energy_range_uj) {
  return RaplSubzone(zone, sub, "dram", energy_uj, max_energy_range_uj);
}

FixtureTree& FixtureTree::RaplConstraint(int zone, int k,
                                         const std::string& name,
                                         uint64_t power_limit_uw,
                                         uint64_t time_window_us) {
  return RaplConstraintOf(Zone(zone), k, name, power_limit_uw, time_window_us);
}

FixtureTree& FixtureTree::RaplConstraintOf(const std::string& zone_entry, int k,
                                           const std::string& name,
                                           uint64_t power_limit_uw,
                                           uint64_t time_window_us) {
  const std::string prefix =
      absl::StrCat(PowercapDir(zone_entry), "/constraint_", k, "_");
  File(prefix + "name", name + "\n");
  File(prefix + "power_limit_uw", absl::StrCat(power_limit_uw, "\n"));
  File(prefix + "time_window_us", absl::StrCat(time_window_us, "\n"));
  return *this;
}

FixtureTree& FixtureTree::Energy(int zone, uint64_t energy_uj) {
  return EnergyOf(Zone(zone), energy_uj);
}

FixtureTree& FixtureTree::EnergyOf(const std::string& zone_entry,
                                   uint64_t energy_uj) {
  return File(PowercapDir(zone_entry) + "/energy_uj",
              absl::StrCat(energy_uj, "\n"));
}

FixtureTree& FixtureTree::Hwmon(int n, const std::string& chip) {
  return File(absl::StrCat("sys/class/hwmon/hwmon", n, "/name"), chip + "\n");
}

FixtureTree& FixtureTree::HwmonTemp(int n, int i, const std::string& label,
                                    int64_t millidegrees) {
  const std::string prefix =
      absl::StrCat("sys/class/hwmon/hwmon", n, "/temp", i, "_");
  File(prefix + "label", label + "\n");
  File(prefix + "input", absl::StrCat(millidegrees, "\n"));
  return *this;
}

FixtureTree& FixtureTree::ThermalZone(int n, const std::string& type,
                                      int64_t millidegrees) {
  const std::string dir = absl::StrCat("sys/class/thermal/thermal_zone", n);
  File(dir + "/type", type + "\n");
  File(dir + "/temp", absl::StrCat(millidegrees, "\n"));
  return *this;
}

FixtureTree& FixtureTree::Cpufreq(int policy, uint64_t scaling_min_khz,
                                  uint64_t scaling_max_khz,
                                  uint64_t scaling_cur_khz,
                                  uint64_t cpuinfo_min_khz,
                                  uint64_t cpuinfo_max_khz,
                                  const std::string& affected_cpus) {
  const std::string dir =
      absl::StrCat("sys/devices/system/cpu/cpufreq/policy", policy);
  File(dir + "/scaling_min_freq", absl::StrCat(scaling_min_khz, "\n"));
  File(dir + "/scaling_max_freq", absl::StrCat(scaling_max_khz, "\n"));
  File(dir + "/scaling_cur_freq", absl::StrCat(scaling_cur_khz, "\n"));
  File(dir + "/cpuinfo_min_freq", absl::StrCat(cpuinfo_min_khz, "\n"));
  File(dir + "/cpuinfo_max_freq", absl::StrCat(cpuinfo_max_khz, "\n"));
  File(dir + "/affected_cpus", affected_cpus + "\n");
  return *this;
}

FixtureTree& FixtureTree::ProcStat(const std::string& contents) {
  return File("proc/stat", contents);
}

}  // namespace joule
