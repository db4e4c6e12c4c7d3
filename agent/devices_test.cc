#include "agent/devices.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace joule {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

GpuModelSpec V100() { return *FindGpuModel("V100"); }

TEST(SimulatedGpuTest, IdleDrawsIdlePower) {
  SimulatedGpu gpu(0, V100(), "n", kStart);
  v1::DeviceSample sample = *gpu.Sample(kStart + absl::Seconds(10));
  EXPECT_DOUBLE_EQ(sample.power_w(), 35);
  EXPECT_NEAR(sample.energy_j(), 350, 1e-6);
  EXPECT_EQ(sample.source(), "simulated");
}

TEST(SimulatedGpuTest, PowerAndSpeedRiseWithCapAndSaturate) {
  SimulatedGpu gpu(0, V100(), "n", kStart);
  gpu.SetBusy(true, kStart);
  double last_power = 0, last_speed = 0;
  for (double cap : {100.0, 150.0, 200.0, 240.0}) {
    ASSERT_TRUE(gpu.SetPowerLimit(cap, kStart).ok());
    EXPECT_GT(gpu.PowerW(), last_power) << cap;
    EXPECT_GT(*gpu.SimulatedSpeed(), last_speed) << cap;
    last_power = gpu.PowerW();
    last_speed = *gpu.SimulatedSpeed();
  }
  // Above the workload's demand (35 + 0.9 * 215 = 228.5 W) the cap no
  // longer matters: saturation.
  ASSERT_TRUE(gpu.SetPowerLimit(250, kStart).ok());
  EXPECT_DOUBLE_EQ(gpu.PowerW(), last_power);
  EXPECT_DOUBLE_EQ(*gpu.SimulatedSpeed(), 1.0);
  // Speed falls slower than power: capping saves energy per unit of work.
  ASSERT_TRUE(gpu.SetPowerLimit(150, kStart).ok());
  EXPECT_GT(*gpu.SimulatedSpeed(), gpu.PowerW() / 228.5);
}

TEST(SimulatedGpuTest, EnergyIntegratesAcrossStateChanges) {
  SimulatedGpu gpu(0, V100(), "n", kStart);
  gpu.SetBusy(true, kStart + absl::Seconds(10));             // 10 s idle: 350 J
  ASSERT_TRUE(gpu.SetPowerLimit(150, kStart + absl::Seconds(20)).ok());  // 228.5 W x 10 s
  v1::DeviceSample sample = *gpu.Sample(kStart + absl::Seconds(30));       // 150 W x 10 s
  EXPECT_NEAR(sample.energy_j(), 350 + 2285 + 1500, 1e-6);
  EXPECT_DOUBLE_EQ(sample.power_cap_w(), 150);
  EXPECT_GT(sample.temp_c(), 30);
}

TEST(SimulatedGpuTest, OutOfRangeCapNamesTheRange) {
  SimulatedGpu gpu(0, V100(), "n", kStart);
  absl::Status status = gpu.SetPowerLimit(300, kStart);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(status.message().find("[100, 250]"), std::string::npos) << status;
  EXPECT_DOUBLE_EQ(gpu.power_limit_w(), 250);
}

std::string WriteStat(const std::string& dir, const std::string& cpu_line) {
  std::ofstream(dir + "/stat") << cpu_line << "\ncpu0 1 2 3 4\n";
  return dir;
}

TEST(EstimatedCpuTest, PowerFollowsUtilization) {
  const std::string dir = ::testing::TempDir();
  WriteStat(dir, "cpu  100 0 100 800 0 0 0 0 0 0");
  EstimatedCpu cpu(dir, 65, 10);
  absl::StatusOr<CpuReading> baseline = cpu.Sample(kStart);
  ASSERT_TRUE(baseline.ok());
  EXPECT_EQ(baseline->energy_j, 0);
  // 300 more busy ticks out of 400: 75% utilization.
  WriteStat(dir, "cpu  300 0 200 900 0 0 0 0 0 0");
  absl::StatusOr<CpuReading> reading = cpu.Sample(kStart + absl::Seconds(2));
  ASSERT_TRUE(reading.ok()) << reading.status();
  ASSERT_EQ(reading->samples.size(), 1u);
  const v1::DeviceSample& sample = reading->samples[0];
  EXPECT_NEAR(sample.utilization(), 0.75, 1e-9);
  EXPECT_NEAR(sample.power_w(), 10 + 55 * 0.75, 1e-9);
  EXPECT_NEAR(sample.energy_j(), 2 * (10 + 55 * 0.75), 1e-9);
  EXPECT_NEAR(reading->energy_j, 2 * (10 + 55 * 0.75), 1e-9);
  EXPECT_EQ(sample.source(), "estimated");
  EXPECT_TRUE(sample.energy_integrated());
  EXPECT_NEAR(reading->busy_seconds, 300.0 / sysconf(_SC_CLK_TCK), 1e-9);
  // Unchanged counters: the CPU idles at its idle power, energy still grows.
  reading = cpu.Sample(kStart + absl::Seconds(4));
  ASSERT_TRUE(reading.ok());
  EXPECT_NEAR(reading->energy_j, 2 * 10, 1e-9);
  EXPECT_EQ(reading->busy_seconds, 0);
}

TEST(EstimatedCpuTest, GarbageIsAnErrorNotACrash) {
  const std::string dir = ::testing::TempDir() + "/garbage";
  mkdir(dir.c_str(), 0755);
  WriteStat(dir, "cpu  12 x 9 4 5 6 7 8");
  EstimatedCpu cpu(dir, 65, 10);
  absl::StatusOr<CpuReading> reading = cpu.Sample(kStart);
  EXPECT_EQ(reading.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(reading.status().message().find("cpu field 2 (nice)"), std::string::npos)
      << reading.status();
  EstimatedCpu missing("/nonexistent-procfs", 65, 10);
  EXPECT_EQ(missing.Sample(kStart).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace joule
