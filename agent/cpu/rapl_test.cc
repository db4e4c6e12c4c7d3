#include "agent/cpu/rapl.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "agent/cpu/fixture_tree.h"
#include "gtest/gtest.h"
#include "joule/v1/node.pb.h"

namespace joule {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
// Typical ranges: 2^32 units of 61 uJ (package) and of 15.3 uJ (dram).
constexpr uint64_t kPkgRange = 262143328850;
constexpr uint64_t kDramRange = 65712999613;

// A two-socket node: packages with long/short-term limits, dram subzones,
// plus zones discovery must ignore.
void TwoSocketNode(FixtureTree& tree) {
  tree.Rapl(0, "package-0", 1'000'000, kPkgRange)
      .RaplConstraint(0, 0, "long_term", 125'000'000, 999'424)
      .RaplConstraint(0, 1, "short_term", 150'000'000, 2'440)
      .File("sys/class/powercap/intel-rapl:0/constraint_0_max_power_uw",
            "165000000\n")
      .RaplSubzone(0, 0, "core", 10, kPkgRange)
      .Dram(0, 1, 2'000'000, kDramRange)
      .Rapl(1, "package-1", 3'000'000, kPkgRange)
      .RaplConstraint(1, 0, "long_term", 125'000'000, 999'424)
      .Dram(1, 0, 4'000'000, kDramRange)
      .RaplSubzone(1, 1, "uncore", 10, kPkgRange)
      .Rapl(2, "psys", 5, kPkgRange)
      .File("sys/class/powercap/intel-rapl-mmio:0/name", "package-0\n")
      .File("sys/class/powercap/intel-rapl/enabled", "1\n");
}

size_t FindDomain(const RaplReader& reader, const std::string& zone) {
  for (size_t i = 0; i < reader.domains().size(); ++i) {
    if (reader.domains()[i].zone == zone) return i;
  }
  ADD_FAILURE() << "no domain " << zone;
  return 0;
}

const v1::DeviceSample* FindSample(const std::vector<v1::DeviceSample>& samples,
                                   v1::DeviceKind kind, int index) {
  for (const v1::DeviceSample& s : samples) {
    if (s.kind() == kind && s.index() == index) return &s;
  }
  return nullptr;
}

TEST(DiscoverRaplTest, FindsPackagesAndDramOnly) {
  FixtureTree tree("rapl_discover");
  TwoSocketNode(tree);
  std::vector<absl::Status> skipped;
  absl::StatusOr<std::vector<RaplDomain>> domains =
      DiscoverRapl(tree.sys(), &skipped);
  ASSERT_TRUE(domains.ok()) << domains.status();
  EXPECT_TRUE(skipped.empty());
  ASSERT_EQ(domains->size(), 4u);
  const RaplDomain& pkg0 = (*domains)[0];
  EXPECT_EQ(pkg0.zone, "intel-rapl:0");
  EXPECT_EQ(pkg0.name, "package-0");
  EXPECT_EQ(pkg0.package, 0);
  EXPECT_FALSE(pkg0.dram);
  EXPECT_EQ(pkg0.max_energy_range_uj, kPkgRange);
  EXPECT_EQ(pkg0.path, tree.sys() + "/class/powercap/intel-rapl:0");
  ASSERT_EQ(pkg0.constraints.size(), 2u);
  EXPECT_EQ(pkg0.constraints[0].name, "long_term");
  EXPECT_EQ(pkg0.constraints[1].name, "short_term");
  EXPECT_EQ((*domains)[1].zone, "intel-rapl:0:1");
  EXPECT_TRUE((*domains)[1].dram);
  EXPECT_EQ((*domains)[1].package, 0);
  EXPECT_EQ((*domains)[1].max_energy_range_uj, kDramRange);
  EXPECT_EQ((*domains)[2].zone, "intel-rapl:1");
  EXPECT_EQ((*domains)[2].package, 1);
  EXPECT_EQ((*domains)[3].zone, "intel-rapl:1:0");
  EXPECT_EQ((*domains)[3].package, 1);
  EXPECT_TRUE((*domains)[3].dram);
}

TEST(DiscoverRaplTest, AbsentPowercapIsEmptyNotAnError) {
  FixtureTree tree("rapl_absent");
  absl::StatusOr<std::vector<RaplDomain>> domains = DiscoverRapl(tree.sys());
  ASSERT_TRUE(domains.ok()) << domains.status();
  EXPECT_TRUE(domains->empty());
  absl::StatusOr<std::unique_ptr<RaplCpu>> cpu =
      RaplCpu::Create(tree.sys(), kStart);
  EXPECT_EQ(cpu.status().code(), absl::StatusCode::kNotFound);
}

TEST(DiscoverRaplTest, PackageIndexComesFromTheNameNotTheZoneNumber) {
  FixtureTree tree("rapl_psys_first");
  // Laptops: intel-rapl:0 may be psys and intel-rapl:1 package-0.
  tree.Rapl(0, "psys", 1, kPkgRange)
      .RaplSubzone(0, 0, "dram", 1, kDramRange)  // Not under a package.
      .Rapl(1, "package-0", 1, kPkgRange)
      .Dram(1, 2, 1, kDramRange);
  absl::StatusOr<std::vector<RaplDomain>> domains = DiscoverRapl(tree.sys());
  ASSERT_TRUE(domains.ok());
  ASSERT_EQ(domains->size(), 2u);
  EXPECT_EQ((*domains)[0].zone, "intel-rapl:1");
  EXPECT_EQ((*domains)[0].package, 0);
  EXPECT_EQ((*domains)[1].zone, "intel-rapl:1:2");
  EXPECT_EQ((*domains)[1].package, 0);
}

TEST(DiscoverRaplTest, UndescribableZonesAreSkippedAndNamed) {
  FixtureTree tree("rapl_skip");
  TwoSocketNode(tree);
  tree.File("sys/class/powercap/intel-rapl:1/max_energy_range_uj", "12abc\n")
      .Remove("sys/class/powercap/intel-rapl:0:1/max_energy_range_uj");
  std::vector<absl::Status> skipped;
  absl::StatusOr<std::vector<RaplDomain>> domains =
      DiscoverRapl(tree.sys(), &skipped);
  ASSERT_TRUE(domains.ok());
  // Package 1 is gone, and with it its dram; package 0's dram is skipped.
  ASSERT_EQ(domains->size(), 1u);
  EXPECT_EQ((*domains)[0].zone, "intel-rapl:0");
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_EQ(skipped[0].code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(skipped[0].message(),
                                "intel-rapl:1/max_energy_range_uj"));
  EXPECT_EQ(skipped[1].code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(skipped[1].message(),
                                "intel-rapl:0:1/max_energy_range_uj"));
}

TEST(DiscoverRaplTest, ZeroRangeIsRejected) {
  FixtureTree tree("rapl_zero_range");
  tree.Rapl(0, "package-0", 0, 0);
  std::vector<absl::Status> skipped;
  absl::StatusOr<std::vector<RaplDomain>> domains =
      DiscoverRapl(tree.sys(), &skipped);
  ASSERT_TRUE(domains.ok());
  EXPECT_TRUE(domains->empty());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].code(), absl::StatusCode::kDataLoss);
}

TEST(RaplDeltaUjTest, WrapsOnceAtTheTopOfTheRange) {
  // The counter takes values in [0, max]; after max comes 0.
  EXPECT_EQ(*RaplDeltaUj(100, 600, 1'000'000, "x"), 500u);
  EXPECT_EQ(*RaplDeltaUj(600, 600, 1'000'000, "x"), 0u);
  EXPECT_EQ(*RaplDeltaUj(1'000'000 - 1000, 500, 1'000'000, "x"), 1501u);
  EXPECT_EQ(*RaplDeltaUj(1'000'000, 0, 1'000'000, "x"), 1u);
  EXPECT_EQ(*RaplDeltaUj(1, 0, 1'000'000, "x"), 1'000'000u);
  const uint64_t max = ~uint64_t{0};
  EXPECT_EQ(*RaplDeltaUj(max - 9, 5, max, "x"), 15u);
  absl::StatusOr<uint64_t> bad = RaplDeltaUj(5, 1'000'001, 1'000'000, "file");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "file"));
}

TEST(RaplReaderTest, WraparoundBetweenTwoReadsGivesTheRightJoules) {
  FixtureTree tree("rapl_wrap");
  tree.Rapl(0, "package-0", kPkgRange - 1000, kPkgRange);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  EXPECT_FALSE(reader.has_baseline(0));
  EXPECT_DOUBLE_EQ(*reader.ReadJoules(0), 0.0);  // Baseline.
  EXPECT_TRUE(reader.has_baseline(0));
  tree.Energy(0, 500);
  // (max - prev) + cur + 1 = 1000 + 500 + 1 uJ.
  EXPECT_DOUBLE_EQ(*reader.ReadJoules(0), 1501e-6);
  tree.Energy(0, 2'000'500);
  EXPECT_DOUBLE_EQ(*reader.ReadJoules(0), 2.0);
}

TEST(RaplReaderTest, ValueAboveRangeIsDataLossAndKeepsTheBaseline) {
  FixtureTree tree("rapl_above");
  tree.Rapl(0, "package-0", 1000, 1'000'000);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  ASSERT_TRUE(reader.ReadJoules(0).ok());
  tree.Energy(0, 1'000'001);
  absl::StatusOr<double> joules = reader.ReadJoules(0);
  EXPECT_EQ(joules.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(
      absl::StrContains(joules.status().message(), "intel-rapl:0/energy_uj"))
      << joules.status();
  tree.Energy(0, 3000);
  EXPECT_DOUBLE_EQ(*reader.ReadJoules(0), 2000e-6);
}

TEST(RaplReaderTest, GarbageCountersAreErrorsNamingTheFile) {
  FixtureTree tree("rapl_garbage");
  tree.Rapl(0, "package-0", 1000, kPkgRange);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  ASSERT_TRUE(reader.ReadJoules(0).ok());
  const std::string file = "sys/class/powercap/intel-rapl:0/energy_uj";
  for (const char* garbage :
       {"", "abc", "-5", "1180591620717411303424", "12abc"}) {
    SCOPED_TRACE(garbage);
    tree.File(file, garbage);
    absl::StatusOr<double> joules = reader.ReadJoules(0);
    ASSERT_FALSE(joules.ok());
    EXPECT_EQ(joules.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(joules.status().message(), tree.Path(file)))
        << joules.status();
  }
  tree.Remove(file);
  EXPECT_EQ(reader.ReadJoules(0).status().code(), absl::StatusCode::kNotFound);
  tree.MakeDirectory(file);
  EXPECT_EQ(reader.ReadJoules(0).status().code(),
            absl::StatusCode::kUnavailable);
  // The baseline survived every failure.
  tree.Remove(file).Energy(0, 6000);
  EXPECT_DOUBLE_EQ(*reader.ReadJoules(0), 5000e-6);
}

TEST(RaplReaderTest, ReadsEveryConstraint) {
  FixtureTree tree("rapl_limits");
  TwoSocketNode(tree);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  absl::StatusOr<std::vector<RaplPowerLimit>> limits = reader.PowerLimits(0);
  ASSERT_TRUE(limits.ok()) << limits.status();
  ASSERT_EQ(limits->size(), 2u);
  EXPECT_EQ((*limits)[0].constraint, 0);
  EXPECT_EQ((*limits)[0].name, "long_term");
  EXPECT_EQ((*limits)[0].power_limit_uw, 125'000'000u);
  EXPECT_EQ((*limits)[0].time_window_us, 999'424u);
  EXPECT_EQ((*limits)[0].max_power_uw, 165'000'000u);
  EXPECT_FALSE((*limits)[0].min_power_uw.has_value());
  EXPECT_EQ((*limits)[1].name, "short_term");
  EXPECT_EQ((*limits)[1].power_limit_uw, 150'000'000u);
  EXPECT_FALSE((*limits)[1].max_power_uw.has_value());

  tree.File("sys/class/powercap/intel-rapl:0/constraint_1_power_limit_uw",
            "-5\n");
  absl::StatusOr<std::vector<RaplPowerLimit>> bad = reader.PowerLimits(0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(
      absl::StrContains(bad.status().message(), "constraint_1_power_limit_uw"));
}

TEST(RaplReaderTest, SetPowerLimitAndRestoreOriginals) {
  FixtureTree tree("rapl_set");
  TwoSocketNode(tree);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  const std::string long_term =
      "sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw";
  const std::string short_term =
      "sys/class/powercap/intel-rapl:0/constraint_1_power_limit_uw";
  const std::string pkg1 =
      "sys/class/powercap/intel-rapl:1/constraint_0_power_limit_uw";
  const size_t pkg1_index = FindDomain(reader, "intel-rapl:1");

  ASSERT_TRUE(reader.SetPowerLimit(0, 0, 90'000'000).ok());
  EXPECT_EQ(tree.Contents(long_term), "90000000\n");
  EXPECT_EQ(*reader.PowerLimitUw(0, 0), 90'000'000u);
  // A second change keeps the first original.
  ASSERT_TRUE(reader.SetPowerLimit(0, 0, 80'000'000).ok());
  ASSERT_TRUE(reader.SetPowerLimit(0, 1, 100'000'000).ok());
  ASSERT_TRUE(reader.SetPowerLimit(pkg1_index, 0, 70'000'000).ok());
  EXPECT_TRUE(reader.HasChangedLimits());

  ASSERT_TRUE(reader.Restore().ok());
  EXPECT_EQ(tree.Contents(long_term), "125000000\n");
  EXPECT_EQ(tree.Contents(short_term), "150000000\n");
  EXPECT_EQ(tree.Contents(pkg1), "125000000\n");
  EXPECT_FALSE(reader.HasChangedLimits());
  // Nothing left to restore: a second Restore writes nothing.
  tree.File(long_term, "111\n");
  ASSERT_TRUE(reader.Restore().ok());
  EXPECT_EQ(tree.Contents(long_term), "111\n");
}

TEST(RaplReaderTest, SetPowerLimitRejectsBadRequests) {
  FixtureTree tree("rapl_set_bad");
  TwoSocketNode(tree);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  const std::string long_term =
      "sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw";
  absl::Status status = reader.SetPowerLimit(0, 0, 200'000'000);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(absl::StrContains(status.message(), "165000000")) << status;
  EXPECT_EQ(reader.SetPowerLimit(0, 0, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reader.SetPowerLimit(0, 7, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reader.SetPowerLimit(99, 0, 1).code(),
            absl::StatusCode::kInvalidArgument);
  tree.File("sys/class/powercap/intel-rapl:0/constraint_0_min_power_uw",
            "50000000\n");
  EXPECT_EQ(reader.SetPowerLimit(0, 0, 10'000'000).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(tree.Contents(long_term), "125000000\n");
  EXPECT_FALSE(reader.HasChangedLimits());

  // An original that cannot be read is not overwritten: it could not be
  // restored.
  tree.File(long_term, "garbage\n");
  status = reader.SetPowerLimit(0, 0, 90'000'000);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(tree.Contents(long_term), "garbage\n");
  EXPECT_FALSE(reader.HasChangedLimits());
}

TEST(RaplReaderTest, FailedRestoreIsKeptForRetry) {
  FixtureTree tree("rapl_restore_retry");
  TwoSocketNode(tree);
  RaplReader reader(*DiscoverRapl(tree.sys()));
  const std::string long_term =
      "sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw";
  ASSERT_TRUE(reader.SetPowerLimit(0, 0, 90'000'000).ok());
  ASSERT_TRUE(reader.SetPowerLimit(0, 1, 90'000'000).ok());
  tree.MakeDirectory(long_term);
  absl::Status status = reader.Restore();
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(
      absl::StrContains(status.message(), "constraint_0_power_limit_uw"))
      << status;
  EXPECT_EQ(tree.Contents(
                "sys/class/powercap/intel-rapl:0/constraint_1_power_limit_uw"),
            "150000000\n");
  EXPECT_TRUE(reader.HasChangedLimits());
  tree.Remove(long_term).File(long_term, "90000000\n");
  ASSERT_TRUE(reader.Restore().ok());
  EXPECT_EQ(tree.Contents(long_term), "125000000\n");
}

TEST(RaplCpuTest, DescribesPackagesAndDram) {
  FixtureTree tree("rapl_describe");
  TwoSocketNode(tree);
  absl::StatusOr<std::unique_ptr<RaplCpu>> cpu =
      RaplCpu::Create(tree.sys(), kStart);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::vector<v1::Device> devices = (*cpu)->Describe();
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices[0].kind(), v1::DEVICE_KIND_CPU);
  EXPECT_EQ(devices[0].index(), 0);
  EXPECT_EQ(devices[0].model(), "CPU package 0");
  EXPECT_EQ(devices[0].source(), "rapl");
  EXPECT_DOUBLE_EQ(devices[0].power_limit_max_w(), 165.0);  // max_power_uw
  EXPECT_DOUBLE_EQ(devices[0].power_limit_default_w(), 125.0);
  EXPECT_EQ(devices[1].kind(), v1::DEVICE_KIND_MEMORY);
  EXPECT_EQ(devices[1].index(), 0);
  EXPECT_EQ(devices[1].source(), "rapl");
  EXPECT_EQ(devices[2].model(), "CPU package 1");
  EXPECT_DOUBLE_EQ(devices[2].power_limit_max_w(), 125.0);  // limit in force
  EXPECT_EQ(devices[3].kind(), v1::DEVICE_KIND_MEMORY);
  EXPECT_EQ(devices[3].index(), 1);
  EXPECT_EQ((*cpu)->Status().state(), v1::SourceStatus::STATE_OK);
}

TEST(RaplCpuTest, SamplesPowerEnergyTemperatureAndCap) {
  FixtureTree tree("rapl_sample");
  TwoSocketNode(tree);
  tree.Hwmon(0, "coretemp")
      .HwmonTemp(0, 1, "Package id 0", 55000)
      .Hwmon(1, "coretemp")
      .HwmonTemp(1, 1, "Package id 1", 61500);
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);

  // 2 s later: package 0 used 100 J, dram 0 8 J, package 1 150 J, dram 1 0 J.
  tree.Energy(0, 1'000'000 + 100'000'000)
      .EnergyOf("intel-rapl:0:1", 2'000'000 + 8'000'000)
      .Energy(1, 3'000'000 + 150'000'000);
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(2));
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 4u);
  const v1::DeviceSample* pkg0 = FindSample(*samples, v1::DEVICE_KIND_CPU, 0);
  ASSERT_NE(pkg0, nullptr);
  EXPECT_DOUBLE_EQ(pkg0->power_w(), 50.0);
  EXPECT_DOUBLE_EQ(pkg0->energy_j(), 100.0);
  EXPECT_DOUBLE_EQ(pkg0->temp_c(), 55.0);
  EXPECT_DOUBLE_EQ(pkg0->power_cap_w(), 125.0);
  EXPECT_EQ(pkg0->source(), "rapl");
  EXPECT_FALSE(pkg0->energy_integrated());
  const v1::DeviceSample* dram0 =
      FindSample(*samples, v1::DEVICE_KIND_MEMORY, 0);
  ASSERT_NE(dram0, nullptr);
  EXPECT_DOUBLE_EQ(dram0->power_w(), 4.0);
  EXPECT_DOUBLE_EQ(dram0->energy_j(), 8.0);
  const v1::DeviceSample* pkg1 = FindSample(*samples, v1::DEVICE_KIND_CPU, 1);
  ASSERT_NE(pkg1, nullptr);
  EXPECT_DOUBLE_EQ(pkg1->power_w(), 75.0);
  EXPECT_DOUBLE_EQ(pkg1->temp_c(), 61.5);
  const v1::DeviceSample* dram1 =
      FindSample(*samples, v1::DEVICE_KIND_MEMORY, 1);
  ASSERT_NE(dram1, nullptr);
  EXPECT_DOUBLE_EQ(dram1->power_w(), 0.0);

  // Package 0 wraps: 1000 uJ below the top, then to 49'998'999 -> 50 J in 1 s.
  tree.Energy(0, kPkgRange - 1000);
  ASSERT_TRUE(cpu->Sample(kStart + absl::Seconds(3)).ok());
  tree.Energy(0, 49'998'999);
  samples = cpu->Sample(kStart + absl::Seconds(4));
  ASSERT_TRUE(samples.ok());
  pkg0 = FindSample(*samples, v1::DEVICE_KIND_CPU, 0);
  ASSERT_NE(pkg0, nullptr);
  EXPECT_DOUBLE_EQ(pkg0->power_w(), 50.0);
  EXPECT_NEAR(pkg0->energy_j(),
              100.0 + (kPkgRange - 1000 - 101'000'000) * 1e-6 + 50.0, 1e-6);
  EXPECT_EQ(cpu->Status().state(), v1::SourceStatus::STATE_OK);
}

TEST(RaplCpuTest, OneBrokenDomainDegradesNotKills) {
  FixtureTree tree("rapl_degraded");
  TwoSocketNode(tree);
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);
  const std::string dram0 = "sys/class/powercap/intel-rapl:0:1/energy_uj";
  for (const char* garbage :
       {"", "abc", "-5", "1180591620717411303424", "12abc"}) {
    SCOPED_TRACE(garbage);
    tree.File(dram0, garbage);
    absl::StatusOr<std::vector<v1::DeviceSample>> samples =
        cpu->Sample(kStart + absl::Seconds(1));
    ASSERT_TRUE(samples.ok()) << samples.status();
    EXPECT_EQ(samples->size(), 3u);
    EXPECT_EQ(FindSample(*samples, v1::DEVICE_KIND_MEMORY, 0), nullptr);
    ASSERT_EQ(cpu->last_errors().size(), 1u);
    EXPECT_EQ(cpu->last_errors()[0].zone, "intel-rapl:0:1");
    EXPECT_EQ(cpu->last_errors()[0].status.code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(cpu->last_errors()[0].status.message(),
                                  tree.Path(dram0)));
    v1::SourceStatus status = cpu->Status();
    EXPECT_EQ(status.name(), "rapl");
    EXPECT_EQ(status.state(), v1::SourceStatus::STATE_DEGRADED);
    EXPECT_TRUE(absl::StrContains(status.message(), "intel-rapl:0:1"));
  }
  const int64_t errors = cpu->Status().errors();
  EXPECT_GE(errors, 5);

  // A directory where the file was: a read error, still degraded only.
  tree.MakeDirectory(dram0);
  ASSERT_TRUE(cpu->Sample(kStart + absl::Seconds(2)).ok());
  EXPECT_EQ(cpu->last_errors()[0].status.code(),
            absl::StatusCode::kUnavailable);

  // Recovery: the baseline from Create (2'000'000 uJ) still holds, so the
  // first good read covers the whole gap: 12 J over 4 s.
  tree.Remove(dram0).EnergyOf("intel-rapl:0:1", 2'000'000 + 12'000'000);
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(4));
  ASSERT_TRUE(samples.ok());
  const v1::DeviceSample* dram =
      FindSample(*samples, v1::DEVICE_KIND_MEMORY, 0);
  ASSERT_NE(dram, nullptr);
  EXPECT_DOUBLE_EQ(dram->power_w(), 3.0);
  EXPECT_DOUBLE_EQ(dram->energy_j(), 12.0);
  EXPECT_TRUE(cpu->last_errors().empty());
  EXPECT_EQ(cpu->Status().state(), v1::SourceStatus::STATE_OK);
  EXPECT_EQ(cpu->Status().errors(), errors + 1);
}

TEST(RaplCpuTest, EveryDomainFailingIsAnError) {
  FixtureTree tree("rapl_all_fail");
  tree.Rapl(0, "package-0", 1000, kPkgRange);
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);
  tree.File("sys/class/powercap/intel-rapl:0/energy_uj", "abc\n");
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(1));
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(
      absl::StrContains(samples.status().message(), "intel-rapl:0/energy_uj"));
}

TEST(RaplCpuTest, UnreadableCountersAtStartAreNotASource) {
  // As non-root on Linux >= 5.10 every energy_uj is unreadable; a directory
  // stands in for that here (root can read mode-000 files).
  FixtureTree tree("rapl_unreadable");
  tree.Rapl(0, "package-0", 1000, kPkgRange)
      .MakeDirectory("sys/class/powercap/intel-rapl:0/energy_uj");
  absl::StatusOr<std::unique_ptr<RaplCpu>> cpu =
      RaplCpu::Create(tree.sys(), kStart);
  EXPECT_EQ(cpu.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(cpu.status().message(), "energy_uj"))
      << cpu.status();
}

TEST(RaplCpuTest, NonRootCountersArePermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads mode-000 files";
  FixtureTree tree("rapl_nonroot");
  tree.Rapl(0, "package-0", 1000, kPkgRange);
  ASSERT_EQ(
      chmod(tree.Path("sys/class/powercap/intel-rapl:0/energy_uj").c_str(), 0),
      0);
  absl::StatusOr<std::unique_ptr<RaplCpu>> cpu =
      RaplCpu::Create(tree.sys(), kStart);
  EXPECT_EQ(cpu.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(cpu.status().message(), "energy_uj"));
}

TEST(RaplCpuTest, DomainWithoutBaselineReportsFromItsSecondGoodRead) {
  FixtureTree tree("rapl_late_baseline");
  TwoSocketNode(tree);
  tree.File("sys/class/powercap/intel-rapl:1:0/energy_uj", "abc\n");
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);
  EXPECT_EQ(cpu->Status().state(), v1::SourceStatus::STATE_DEGRADED);
  tree.EnergyOf("intel-rapl:1:0", 1'000'000);
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(1));
  ASSERT_TRUE(samples.ok());
  EXPECT_EQ(FindSample(*samples, v1::DEVICE_KIND_MEMORY, 1), nullptr);
  EXPECT_TRUE(cpu->last_errors().empty());
  tree.EnergyOf("intel-rapl:1:0", 3'000'000);
  samples = cpu->Sample(kStart + absl::Seconds(2));
  ASSERT_TRUE(samples.ok());
  const v1::DeviceSample* dram1 =
      FindSample(*samples, v1::DEVICE_KIND_MEMORY, 1);
  ASSERT_NE(dram1, nullptr);
  EXPECT_DOUBLE_EQ(dram1->power_w(), 2.0);
  EXPECT_DOUBLE_EQ(dram1->energy_j(), 2.0);
}

TEST(RaplCpuTest, BrokenTemperatureKeepsThePowerSample) {
  FixtureTree tree("rapl_bad_temp");
  tree.Rapl(0, "package-0", 0, kPkgRange)
      .RaplConstraint(0, 0, "long_term", 100'000'000, 999'424)
      .Hwmon(0, "coretemp")
      .HwmonTemp(0, 1, "Package id 0", 50000);
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);
  tree.Energy(0, 10'000'000)
      .File("sys/class/hwmon/hwmon0/temp1_input", "12abc\n");
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(1));
  ASSERT_TRUE(samples.ok());
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_DOUBLE_EQ((*samples)[0].power_w(), 10.0);
  EXPECT_DOUBLE_EQ((*samples)[0].temp_c(), 0.0);
  ASSERT_EQ(cpu->last_errors().size(), 1u);
  EXPECT_TRUE(
      absl::StrContains(cpu->last_errors()[0].status.message(), "temp1_input"));
}

TEST(RaplCpuTest, RepeatedTimestampKeepsPowerAndAddsEnergy) {
  FixtureTree tree("rapl_same_time");
  tree.Rapl(0, "package-0", 0, kPkgRange);
  std::unique_ptr<RaplCpu> cpu = *RaplCpu::Create(tree.sys(), kStart);
  tree.Energy(0, 20'000'000);
  ASSERT_TRUE(cpu->Sample(kStart + absl::Seconds(1)).ok());
  tree.Energy(0, 25'000'000);
  absl::StatusOr<std::vector<v1::DeviceSample>> samples =
      cpu->Sample(kStart + absl::Seconds(1));
  ASSERT_TRUE(samples.ok());
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_DOUBLE_EQ((*samples)[0].power_w(), 20.0);
  EXPECT_DOUBLE_EQ((*samples)[0].energy_j(), 25.0);
}

}  // namespace
}  // namespace joule
