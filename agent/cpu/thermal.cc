#include "agent/cpu/thermal.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/cpu/sysfs.h"

namespace joule {
namespace {

constexpr int64_t kMinMillidegrees = -273150;
constexpr int64_t kMaxMillidegrees = 200000;

// Entries of `dir` named <prefix><N>, as (N, name) sorted by N (so hwmon10
// follows hwmon9). NOT_FOUND passes through for the caller to treat as absent.
absl::StatusOr<std::vector<std::pair<int, std::string>>> IndexedEntries(
    const std::string& dir, absl::string_view prefix) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  if (!names.ok()) return names.status();
  std::vector<std::pair<int, std::string>> entries;
  for (const std::string& name : *names) {
    absl::string_view rest = name;
    int index = 0;
    if (absl::ConsumePrefix(&rest, prefix) && ParseIndex(rest, &index)) {
      entries.emplace_back(index, name);
    }
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

// The directory holding a hwmon device's attributes: hwmonN itself, or
// hwmonN/device on kernels that kept them there.
std::string HwmonAttributeDir(const std::string& hwmon_dir) {
  if (PathExists(hwmon_dir + "/name")) return hwmon_dir;
  const std::string device_dir = hwmon_dir + "/device";
  if (PathExists(device_dir + "/name")) return device_dir;
  return hwmon_dir;
}

// The tempI_label files of an hwmon attribute directory, as (I, label path).
std::vector<std::pair<int, std::string>> TempLabels(
    const std::vector<std::string>& names) {
  std::vector<std::pair<int, std::string>> labels;
  for (const std::string& name : names) {
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, "temp") ||
        !absl::ConsumeSuffix(&rest, "_label")) {
      continue;
    }
    int index = 0;
    if (ParseIndex(rest, &index)) labels.emplace_back(index, name);
  }
  std::sort(labels.begin(), labels.end());
  return labels;
}

bool HasPackage(const std::vector<PackageSensor>& sensors, int package) {
  return std::any_of(
      sensors.begin(), sensors.end(),
      [package](const PackageSensor& s) { return s.package == package; });
}

absl::Status DiscoverHwmon(const std::string& sysfs_root,
                           std::vector<PackageSensor>* sensors,
                           std::vector<absl::Status>* skipped) {
  const std::string class_dir = sysfs_root + "/class/hwmon";
  absl::StatusOr<std::vector<std::pair<int, std::string>>> devices =
      IndexedEntries(class_dir, "hwmon");
  if (absl::IsNotFound(devices.status())) return absl::OkStatus();
  if (!devices.ok()) return devices.status();

  int k10temp_instances = 0;
  for (const auto& [unused_index, entry] : *devices) {
    const std::string dir = HwmonAttributeDir(class_dir + "/" + entry);
    absl::StatusOr<std::string> chip = ReadStringFile(dir + "/name");
    if (!chip.ok()) {
      // Many hwmon devices have no name worth reading; only a failure other
      // than absence says something is wrong.
      if (!absl::IsNotFound(chip.status())) skipped->push_back(chip.status());
      continue;
    }
    if (*chip != "coretemp" && *chip != "k10temp") continue;
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
    if (!names.ok()) {
      skipped->push_back(names.status());
      continue;
    }
    const bool k10temp = *chip == "k10temp";
    const int k10temp_package = k10temp ? k10temp_instances++ : 0;
    PackageSensor tctl;
    PackageSensor tdie;
    for (const auto& [temp_index, label_file] : TempLabels(*names)) {
      const std::string label_path = dir + "/" + label_file;
      absl::StatusOr<std::string> label = ReadStringFile(label_path);
      if (!label.ok()) {
        skipped->push_back(label.status());
        continue;
      }
      PackageSensor sensor;
      sensor.source = *chip;
      sensor.label = *label;
      sensor.path = absl::StrCat(dir, "/temp", temp_index, "_input");
      if (!k10temp) {
        absl::string_view rest = *label;
        int package = 0;
        if (absl::ConsumePrefix(&rest, "Package id ") &&
            ParseIndex(rest, &package) && !HasPackage(*sensors, package)) {
          sensor.package = package;
          sensors->push_back(std::move(sensor));
        }
      } else if (*label == "Tdie" && tdie.path.empty()) {
        sensor.package = k10temp_package;
        tdie = std::move(sensor);
      } else if (*label == "Tctl" && tctl.path.empty()) {
        sensor.package = k10temp_package;
        tctl = std::move(sensor);
      }
    }
    if (k10temp && !HasPackage(*sensors, k10temp_package)) {
      if (!tdie.path.empty()) {
        sensors->push_back(std::move(tdie));
      } else if (!tctl.path.empty()) {
        sensors->push_back(std::move(tctl));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status DiscoverZones(const std::string& sysfs_root,
                           std::vector<ThermalZone>* zones,
                           std::vector<absl::Status>* skipped) {
  const std::string class_dir = sysfs_root + "/class/thermal";
  absl::StatusOr<std::vector<std::pair<int, std::string>>> entries =
      IndexedEntries(class_dir, "thermal_zone");
  if (absl::IsNotFound(entries.status())) return absl::OkStatus();
  if (!entries.ok()) return entries.status();
  for (const auto& [index, entry] : *entries) {
    const std::string dir = class_dir + "/" + entry;
    absl::StatusOr<std::string> type = ReadStringFile(dir + "/type");
    if (!type.ok()) {
      skipped->push_back(type.status());
      continue;
    }
    if (type->empty()) {
      skipped->push_back(
          absl::DataLossError(absl::StrCat(dir, "/type: empty zone type")));
      continue;
    }
    zones->push_back(ThermalZone{index, *type, dir + "/temp"});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> ReadMillidegreesFile(const std::string& path) {
  absl::StatusOr<int64_t> millidegrees = ReadInt64File(path);
  if (!millidegrees.ok()) return millidegrees.status();
  if (*millidegrees < kMinMillidegrees || *millidegrees > kMaxMillidegrees) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", *millidegrees,
                     " millidegrees C is outside the plausible range [",
                     kMinMillidegrees, ", ", kMaxMillidegrees, "]"));
  }
  return static_cast<double>(*millidegrees) / 1000.0;
}

absl::StatusOr<CpuThermal> CpuThermal::Discover(
    const std::string& sysfs_root, std::vector<absl::Status>* skipped) {
  std::vector<absl::Status> local_skipped;
  if (skipped == nullptr) skipped = &local_skipped;
  std::vector<PackageSensor> sensors;
  std::vector<ThermalZone> zones;
  if (absl::Status status = DiscoverHwmon(sysfs_root, &sensors, skipped);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = DiscoverZones(sysfs_root, &zones, skipped);
      !status.ok()) {
    return status;
  }
  if (sensors.empty()) {
    int package = 0;
    for (const ThermalZone& zone : zones) {
      if (zone.type != "x86_pkg_temp") continue;
      sensors.push_back(PackageSensor{package++, "x86_pkg_temp",
                                      absl::StrCat("thermal_zone", zone.index),
                                      zone.temp_path});
    }
  }
  std::sort(sensors.begin(), sensors.end(),
            [](const PackageSensor& a, const PackageSensor& b) {
              return a.package < b.package;
            });
  return CpuThermal(std::move(sensors), std::move(zones));
}

CpuThermal::CpuThermal(std::vector<PackageSensor> package_sensors,
                       std::vector<ThermalZone> zones)
    : package_sensors_(std::move(package_sensors)), zones_(std::move(zones)) {}

ThermalReading CpuThermal::Read() const {
  ThermalReading reading;
  for (const PackageSensor& sensor : package_sensors_) {
    absl::StatusOr<double> temp_c = ReadMillidegreesFile(sensor.path);
    if (temp_c.ok()) {
      reading.package_temp_c[sensor.package] = *temp_c;
    } else {
      reading.errors.push_back(temp_c.status());
    }
  }
  for (const ThermalZone& zone : zones_) {
    absl::StatusOr<double> temp_c = ReadMillidegreesFile(zone.temp_path);
    if (temp_c.ok()) {
      reading.zones.push_back(ZoneTemp{zone.index, zone.type, *temp_c});
    } else {
      reading.errors.push_back(temp_c.status());
    }
  }
  return reading;
}

absl::StatusOr<double> CpuThermal::ReadPackageTempC(int package) const {
  for (const PackageSensor& sensor : package_sensors_) {
    if (sensor.package == package) return ReadMillidegreesFile(sensor.path);
  }
  return absl::NotFoundError(
      absl::StrCat("no temperature sensor for CPU package ", package));
}

}  // namespace joule
