#include "agent/cpu/thermal.h"

#include <string>

#include "absl/strings/match.h"
#include "agent/cpu/fixture_tree.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(CpuThermalTest, NoClassDirectoriesMeansNoSensors) {
  FixtureTree tree("thermal_empty");
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok()) << thermal.status();
  EXPECT_TRUE(thermal->package_sensors().empty());
  EXPECT_TRUE(thermal->zones().empty());
  ThermalReading reading = thermal->Read();
  EXPECT_TRUE(reading.package_temp_c.empty());
  EXPECT_TRUE(reading.errors.empty());
  EXPECT_EQ(thermal->ReadPackageTempC(0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CpuThermalTest, CoretempPackageLabelsMapToPackages) {
  FixtureTree tree("thermal_coretemp");
  tree.Hwmon(0, "acpitz")
      .HwmonTemp(0, 1, "", 27800)
      .Hwmon(1, "coretemp")
      .HwmonTemp(1, 1, "Package id 0", 45000)
      .HwmonTemp(1, 2, "Core 0", 43000)
      .HwmonTemp(1, 3, "Core 1", 44000)
      .Hwmon(2, "coretemp")
      .HwmonTemp(2, 1, "Package id 1", 51500)
      .HwmonTemp(2, 2, "Core 0", 50000)
      .Hwmon(3, "nvme")
      .HwmonTemp(3, 1, "Composite", 38850);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok()) << thermal.status();
  ASSERT_EQ(thermal->package_sensors().size(), 2u);
  EXPECT_EQ(thermal->package_sensors()[0].source, "coretemp");
  EXPECT_EQ(thermal->package_sensors()[0].label, "Package id 0");
  ThermalReading reading = thermal->Read();
  EXPECT_TRUE(reading.errors.empty());
  EXPECT_DOUBLE_EQ(reading.package_temp_c.at(0), 45.0);
  EXPECT_DOUBLE_EQ(reading.package_temp_c.at(1), 51.5);
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(1), 51.5);
}

TEST(CpuThermalTest, HwmonNumbersSortNumerically) {
  FixtureTree tree("thermal_order");
  // hwmon10 holds package 1, hwmon2 package 0; both must be found.
  tree.Hwmon(10, "coretemp")
      .HwmonTemp(10, 1, "Package id 1", 60000)
      .Hwmon(2, "coretemp")
      .HwmonTemp(2, 1, "Package id 0", 40000);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  ASSERT_EQ(thermal->package_sensors().size(), 2u);
  EXPECT_EQ(thermal->package_sensors()[0].package, 0);
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(0), 40.0);
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(1), 60.0);
}

TEST(CpuThermalTest, K10tempPrefersTdieOverTctl) {
  FixtureTree tree("thermal_k10temp");
  tree.Hwmon(0, "k10temp")
      .HwmonTemp(0, 1, "Tctl", 72000)
      .HwmonTemp(0, 2, "Tdie", 52000)
      .HwmonTemp(0, 3, "Tccd1", 50000);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  ASSERT_EQ(thermal->package_sensors().size(), 1u);
  EXPECT_EQ(thermal->package_sensors()[0].label, "Tdie");
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(0), 52.0);
}

TEST(CpuThermalTest, K10tempTctlAloneIsPackageZero) {
  FixtureTree tree("thermal_tctl");
  tree.Hwmon(1, "k10temp").HwmonTemp(1, 1, "Tctl", 61250);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(0), 61.25);
}

TEST(CpuThermalTest, AttributesUnderDeviceDirectoryOnOldKernels) {
  FixtureTree tree("thermal_olddevice");
  tree.File("sys/class/hwmon/hwmon0/device/name", "coretemp\n")
      .File("sys/class/hwmon/hwmon0/device/temp1_label", "Package id 0\n")
      .File("sys/class/hwmon/hwmon0/device/temp1_input", "39000\n");
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  EXPECT_DOUBLE_EQ(*thermal->ReadPackageTempC(0), 39.0);
}

TEST(CpuThermalTest, ThermalZonesAreReadAndPkgTempIsTheFallback) {
  FixtureTree tree("thermal_zones");
  tree.ThermalZone(0, "acpitz", 27800)
      .ThermalZone(1, "x86_pkg_temp", 48000)
      .ThermalZone(2, "x86_pkg_temp", -5000)  // Cold, not garbage.
      .ThermalZone(3, "pch_cannonlake", 41000);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  ASSERT_EQ(thermal->zones().size(), 4u);
  ThermalReading reading = thermal->Read();
  EXPECT_TRUE(reading.errors.empty());
  ASSERT_EQ(reading.zones.size(), 4u);
  EXPECT_EQ(reading.zones[0].type, "acpitz");
  EXPECT_DOUBLE_EQ(reading.zones[0].temp_c, 27.8);
  EXPECT_DOUBLE_EQ(reading.package_temp_c.at(0), 48.0);
  EXPECT_DOUBLE_EQ(reading.package_temp_c.at(1), -5.0);
  EXPECT_EQ(thermal->package_sensors()[0].source, "x86_pkg_temp");
}

TEST(CpuThermalTest, HwmonWinsOverPkgTempZones) {
  FixtureTree tree("thermal_both");
  tree.Hwmon(0, "coretemp")
      .HwmonTemp(0, 1, "Package id 0", 45000)
      .ThermalZone(0, "x86_pkg_temp", 46000);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  ASSERT_EQ(thermal->package_sensors().size(), 1u);
  EXPECT_EQ(thermal->package_sensors()[0].source, "coretemp");
}

TEST(CpuThermalTest, GarbageTemperaturesAreErrorsNamingTheFile) {
  FixtureTree tree("thermal_garbage");
  tree.Hwmon(0, "coretemp")
      .HwmonTemp(0, 1, "Package id 0", 45000)
      .HwmonTemp(0, 2, "Package id 1", 45000)
      .ThermalZone(0, "acpitz", 27800)
      .ThermalZone(1, "x86_pkg_temp", 1);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  for (const char* garbage :
       {"", "abc", "12abc", "1180591620717411303424", "999999999", "-300000"}) {
    SCOPED_TRACE(garbage);
    tree.File("sys/class/hwmon/hwmon0/temp1_input", garbage)
        .File("sys/class/thermal/thermal_zone0/temp", garbage);
    ThermalReading reading = thermal->Read();
    ASSERT_EQ(reading.errors.size(), 2u);
    EXPECT_EQ(reading.errors[0].code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(
        absl::StrContains(reading.errors[0].message(), "hwmon0/temp1_input"))
        << reading.errors[0];
    EXPECT_TRUE(
        absl::StrContains(reading.errors[1].message(), "thermal_zone0/temp"))
        << reading.errors[1];
    // The good sensors are still read; the bad ones have no number.
    EXPECT_EQ(reading.package_temp_c.count(0), 0u);
    EXPECT_DOUBLE_EQ(reading.package_temp_c.at(1), 45.0);
    ASSERT_EQ(reading.zones.size(), 1u);
    EXPECT_EQ(reading.zones[0].type, "x86_pkg_temp");
    EXPECT_EQ(thermal->ReadPackageTempC(0).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(CpuThermalTest, MissingAndUnreadableTemperatureFiles) {
  FixtureTree tree("thermal_missing");
  tree.Hwmon(0, "coretemp").HwmonTemp(0, 1, "Package id 0", 45000);
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(tree.sys());
  ASSERT_TRUE(thermal.ok());
  tree.Remove("sys/class/hwmon/hwmon0/temp1_input");
  EXPECT_EQ(thermal->ReadPackageTempC(0).status().code(),
            absl::StatusCode::kNotFound);
  tree.MakeDirectory("sys/class/hwmon/hwmon0/temp1_input");
  absl::StatusOr<double> temp = thermal->ReadPackageTempC(0);
  EXPECT_EQ(temp.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(temp.status().message(), "temp1_input"));
}

TEST(CpuThermalTest, UndescribableSensorsAreSkippedAndListed) {
  FixtureTree tree("thermal_skipped");
  tree.Hwmon(0, "coretemp")
      .HwmonTemp(0, 1, "Package id 0", 45000)
      .MakeDirectory("sys/class/hwmon/hwmon0/temp1_label")  // Unreadable.
      .File("sys/class/hwmon/hwmon0/temp1_input", "45000\n")
      .ThermalZone(0, "acpitz", 27800)
      .File("sys/class/thermal/thermal_zone0/type", "\n");  // Empty type.
  std::vector<absl::Status> skipped;
  absl::StatusOr<CpuThermal> thermal =
      CpuThermal::Discover(tree.sys(), &skipped);
  ASSERT_TRUE(thermal.ok()) << thermal.status();
  EXPECT_TRUE(thermal->package_sensors().empty());
  EXPECT_TRUE(thermal->zones().empty());
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_TRUE(absl::StrContains(skipped[0].message(), "temp1_label"));
  EXPECT_TRUE(absl::StrContains(skipped[1].message(), "thermal_zone0/type"));
}

}  // namespace
}  // namespace joule
