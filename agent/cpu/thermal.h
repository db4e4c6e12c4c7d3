#ifndef JOULE_AGENT_CPU_THERMAL_H_
#define JOULE_AGENT_CPU_THERMAL_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule {

// A temperature sensor that stands for a whole CPU package.
struct PackageSensor {
  // CPU package (socket) index.
  int package = 0;
  // "coretemp", "k10temp" (hwmon chip names) or "x86_pkg_temp" (thermal zone).
  std::string source;
  // The hwmon label ("Package id 0", "Tdie", "Tctl") or the thermal zone
  // directory ("thermal_zone3").
  std::string label;
  // The file holding millidegrees Celsius.
  std::string path;
};

// One thermal zone (/sys/class/thermal/thermal_zoneN).
struct ThermalZone {
  int index = 0;
  // The zone's `type`: "x86_pkg_temp", "acpitz", "pch_cannonlake", ...
  std::string type;
  std::string temp_path;
};

struct ZoneTemp {
  int index = 0;
  std::string type;
  double temp_c = 0;
};

// One pass over every sensor. Files that failed are in `errors` (each naming
// its file) and have no entry in the maps; the rest are exact.
struct ThermalReading {
  std::map<int, double> package_temp_c;
  std::vector<ZoneTemp> zones;
  std::vector<absl::Status> errors;
};

// Reads CPU temperatures from hwmon and the thermal class.
//
// Sources (Linux kernel docs: hwmon/sysfs-interface, hwmon/coretemp,
// hwmon/k10temp, driver-api/thermal/sysfs-api; ABI sysfs-class-thermal):
//  1. hwmon: /sys/class/hwmon/hwmonN/{name, tempI_label, tempI_input}, with
//     tempI_input in millidegrees Celsius. Older kernels put the attributes in
//     hwmonN/device/; both are accepted.
//     - "coretemp" (Intel): the label "Package id P" is package P.
//     - "k10temp" (AMD): one instance per socket; "Tdie" (the die temperature)
//       is preferred over "Tctl" (the control temperature, which carries an
//       offset on some parts). The Kth k10temp instance in hwmon order is
//       package K -- on the usual single-socket node, package 0.
//  2. thermal zones: /sys/class/thermal/thermal_zoneN/{type, temp}, temp in
//     millidegrees Celsius. Every zone is reported; when hwmon gave no package
//     sensor, the Kth "x86_pkg_temp" zone stands for package K.
// A temperature outside [-273.15, 200] C is a DATA_LOSS, not a number.
//
// Immutable after Discover; Read is const and thread-compatible.
class CpuThermal {
 public:
  // Scans `sysfs_root` (normally "/sys"). Absent class directories mean no
  // sensors, not an error; an existing one that cannot be listed is an error.
  // Sensors that cannot be described (unreadable name or label) are skipped
  // and, when `skipped` is given, listed there.
  static absl::StatusOr<CpuThermal> Discover(
      const std::string& sysfs_root,
      std::vector<absl::Status>* skipped = nullptr);

  CpuThermal(std::vector<PackageSensor> package_sensors,
             std::vector<ThermalZone> zones);

  const std::vector<PackageSensor>& package_sensors() const {
    return package_sensors_;
  }
  const std::vector<ThermalZone>& zones() const { return zones_; }

  ThermalReading Read() const;

  // NOT_FOUND when no sensor stands for `package`.
  absl::StatusOr<double> ReadPackageTempC(int package) const;

 private:
  std::vector<PackageSensor> package_sensors_;
  std::vector<ThermalZone> zones_;
};

// Reads a millidegree-Celsius file as degrees Celsius, rejecting impossible
// values as DATA_LOSS naming the file.
absl::StatusOr<double> ReadMillidegreesFile(const std::string& path);

}  // namespace joule

#endif  // JOULE_AGENT_CPU_THERMAL_H_
