#include "agent/nvml/nvml_gpu.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/nvml/nvml_library.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

// The fake library, reached through the same dlopen path the agent uses.
std::string FakeLibraryPath() {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/",
                      std::getenv("TEST_WORKSPACE"),
                      "/tests/fakes/fake_nvml/libnvidia-ml.so.1");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// The value of `key` on device `index`'s line of a fake state file, or
// "<absent>".
std::string FieldOf(const std::string& text, int index,
                    const std::string& key) {
  const std::string prefix = absl::StrCat("device ", index, " ");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::StartsWith(field, key + "=")) {
        return std::string(field.substr(key.size() + 1));
      }
    }
  }
  return "<absent>";
}

// One fake GPU, as a `device` line of the state file.
class FakeGpu {
 public:
  static FakeGpu V100() {
    return FakeGpu()
        .Set("name", "\"Tesla V100-PCIE-16GB\"")
        .Set("uuid", "GPU-0000-v100")
        .Set("memory_mib", "16160")
        .Set("power_mw", "65000")
        .Set("energy_mj", "123456")
        .Set("temp_c", "40")
        .Set("util_gpu", "35")
        .Set("util_mem", "12")
        .Set("sm_mhz", "1230")
        .Set("mem_mhz", "877")
        .Set("max_sm_mhz", "1380")
        .Set("limit_min_mw", "100000")
        .Set("limit_max_mw", "250000")
        .Set("limit_default_mw", "250000")
        .Set("limit_mw", "250000")
        .Set("throttle", "0x4")
        .Set("energy_supported", "1");
  }
  static FakeGpu A40() {
    return FakeGpu()
        .Set("name", "\"NVIDIA A40\"")
        .Set("uuid", "GPU-1111-a40")
        .Set("memory_mib", "46068")
        .Set("power_mw", "30000")
        .Set("energy_mj", "5000000")
        .Set("temp_c", "30")
        .Set("util_gpu", "0")
        .Set("util_mem", "0")
        .Set("sm_mhz", "210")
        .Set("mem_mhz", "405")
        .Set("max_sm_mhz", "1740")
        .Set("limit_min_mw", "100000")
        .Set("limit_max_mw", "300000")
        .Set("limit_default_mw", "300000")
        .Set("limit_mw", "300000")
        .Set("throttle", "0x1");
  }

  FakeGpu& Set(const std::string& key, const std::string& value) {
    fields_[key] = value;
    return *this;
  }
  std::string Line(int index) const {
    std::string line = absl::StrCat("device ", index);
    for (const auto& [key, value] : fields_) {
      absl::StrAppend(&line, " ", key, "=", value);
    }
    return line;
  }

 private:
  std::map<std::string, std::string> fields_;
};

// A fake NVML state file: devices plus injected failures.
class FakeNvmlState {
 public:
  FakeNvmlState& Gpu(FakeGpu gpu) {
    gpus_.push_back(std::move(gpu));
    return *this;
  }
  FakeGpu& gpu(int index) { return gpus_.at(index); }
  FakeNvmlState& Line(const std::string& line) {
    extra_.push_back(line);
    return *this;
  }
  FakeNvmlState& ClearLines() {
    extra_.clear();
    return *this;
  }
  std::string Text() const {
    std::string text = "# fake NVML state written by nvml_gpu_test\n";
    for (size_t i = 0; i < gpus_.size(); ++i) {
      absl::StrAppend(&text, gpus_[i].Line(static_cast<int>(i)), "\n");
    }
    for (const std::string& line : extra_) absl::StrAppend(&text, line, "\n");
    return text;
  }

 private:
  std::vector<FakeGpu> gpus_;
  std::vector<std::string> extra_;
};

class NvmlGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(
        std::getenv("TEST_TMPDIR"), "/nvml_state_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    setenv("FAKE_NVML_STATE", path_.c_str(), 1);
    state_.Gpu(FakeGpu::V100()).Gpu(FakeGpu::A40());
  }

  void Write() { WriteFile(path_, state_.Text()); }

  // Writes the state, loads the fake library and discovers its GPUs.
  std::vector<std::unique_ptr<GpuDevice>> Discover() {
    Write();
    absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
        NvmlLibrary::Load(FakeLibraryPath());
    EXPECT_TRUE(nvml.ok()) << nvml.status();
    if (!nvml.ok()) return {};
    absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> gpus =
        DiscoverNvmlGpus(*nvml, clock_.Now());
    EXPECT_TRUE(gpus.ok()) << gpus.status();
    if (!gpus.ok()) return {};
    return *std::move(gpus);
  }

  std::string path_;
  FakeNvmlState state_;
  FakeClock clock_;
};

TEST(MatchGpuModelTest, MatchesWholeWordsOfCatalogModels) {
  const std::vector<std::pair<std::string, absl::optional<std::string>>> cases =
      {
          {"Tesla V100-PCIE-16GB", "V100"},
          {"Tesla V100-SXM2-32GB", "V100"},
          {"NVIDIA A100-SXM4-40GB", "A100"},
          {"NVIDIA A100 80GB PCIe", "A100"},
          {"NVIDIA A40", "A40"},
          {"Quadro RTX 6000", "RTX6000"},
          {"NVIDIA H100 80GB HBM3", "H100"},
          {"NVIDIA A10", absl::nullopt},
          {"NVIDIA GeForce RTX 4090", absl::nullopt},
          {"", absl::nullopt},
      };
  for (const auto& [name, model] : cases) {
    EXPECT_EQ(MatchGpuModel(name), model) << name;
  }
}

TEST_F(NvmlGpuTest, DiscoversDevicesWithDescriptions) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);

  const v1::Device v100 = gpus[0]->Describe();
  EXPECT_EQ(v100.index(), 0);
  EXPECT_EQ(v100.kind(), v1::DEVICE_KIND_GPU);
  EXPECT_EQ(v100.model(), "V100");
  EXPECT_EQ(v100.uuid(), "GPU-0000-v100");
  EXPECT_EQ(v100.memory_bytes(), int64_t{16160} << 20);
  EXPECT_DOUBLE_EQ(v100.power_limit_min_w(), 100);
  EXPECT_DOUBLE_EQ(v100.power_limit_default_w(), 250);
  EXPECT_DOUBLE_EQ(v100.power_limit_max_w(), 250);
  EXPECT_DOUBLE_EQ(v100.idle_power_w(), 35);  // Catalog prior.
  EXPECT_EQ(v100.clock_min_mhz(), 135);       // Catalog prior.
  EXPECT_EQ(v100.clock_max_mhz(), 1380);
  EXPECT_EQ(v100.source(), "nvml");
  EXPECT_DOUBLE_EQ(gpus[0]->power_limit_w(), 250);
  EXPECT_EQ(gpus[0]->SimulatedSpeed(), absl::nullopt);

  const v1::Device a40 = gpus[1]->Describe();
  EXPECT_EQ(a40.index(), 1);
  EXPECT_EQ(a40.model(), "A40");
  EXPECT_EQ(a40.uuid(), "GPU-1111-a40");
  EXPECT_DOUBLE_EQ(a40.power_limit_max_w(), 300);
  EXPECT_DOUBLE_EQ(a40.power_limit_default_w(), 300);
  EXPECT_EQ(a40.clock_max_mhz(), 1740);
}

TEST_F(NvmlGpuTest, UnknownModelKeepsNvmlNameAndNoPriors) {
  state_.gpu(1).Set("name", "\"NVIDIA GeForce RTX 4090\"");
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  const v1::Device device = gpus[1]->Describe();
  EXPECT_EQ(device.model(), "NVIDIA GeForce RTX 4090");
  EXPECT_DOUBLE_EQ(device.idle_power_w(), 0);
  EXPECT_EQ(device.clock_min_mhz(), 0);
}

TEST_F(NvmlGpuTest, SamplesReadingsInProtoUnits) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  absl::StatusOr<v1::DeviceSample> sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ(sample->index(), 0);
  EXPECT_EQ(sample->kind(), v1::DEVICE_KIND_GPU);
  EXPECT_DOUBLE_EQ(sample->power_w(), 65);
  EXPECT_DOUBLE_EQ(sample->energy_j(), 0);  // Nothing since discovery.
  EXPECT_DOUBLE_EQ(sample->temp_c(), 40);
  EXPECT_DOUBLE_EQ(sample->utilization(), 0.35);
  EXPECT_DOUBLE_EQ(sample->memory_utilization(), 0.12);
  EXPECT_EQ(sample->sm_clock_mhz(), 1230);
  EXPECT_EQ(sample->mem_clock_mhz(), 877);
  EXPECT_DOUBLE_EQ(sample->power_cap_w(), 250);
  EXPECT_EQ(sample->throttle_reasons(), nvmlClocksThrottleReasonSwPowerCap);
  EXPECT_FALSE(sample->energy_integrated());
  EXPECT_EQ(sample->source(), "nvml");

  sample = gpus[1]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ(sample->index(), 1);
  EXPECT_DOUBLE_EQ(sample->power_w(), 30);
  EXPECT_EQ(sample->throttle_reasons(), nvmlClocksThrottleReasonGpuIdle);
}

TEST_F(NvmlGpuTest, EnergyIsTheCounterDeltaSinceDiscovery) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);

  state_.gpu(0).Set("energy_mj", absl::StrCat(123456 + 50000));
  Write();
  clock_.Advance(absl::Seconds(1));
  absl::StatusOr<v1::DeviceSample> sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->energy_j(), 50);

  state_.gpu(0).Set("energy_mj", absl::StrCat(123456 + 75000));
  Write();
  clock_.Advance(absl::Seconds(1));
  sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->energy_j(), 75);
  EXPECT_FALSE(sample->energy_integrated());

  // A driver reload restarts the counter: energy keeps growing from there.
  state_.gpu(0).Set("energy_mj", "1000");
  Write();
  sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->energy_j(), 76);
}

TEST_F(NvmlGpuTest, IntegratesPowerWhereThereIsNoCounter) {
  state_.gpu(0).Set("energy_supported", "0").Set("power_mw", "100000");
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);

  clock_.Advance(absl::Seconds(10));
  absl::StatusOr<v1::DeviceSample> sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_TRUE(sample->energy_integrated());
  EXPECT_NEAR(sample->energy_j(), 100 * 10, 1e-9);

  // Trapezoid between samples: (100 W + 200 W) / 2 * 10 s.
  state_.gpu(0).Set("power_mw", "200000");
  Write();
  clock_.Advance(absl::Seconds(10));
  sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_TRUE(sample->energy_integrated());
  EXPECT_NEAR(sample->energy_j(), 1000 + 1500, 1e-9);

  // A clock that does not move adds nothing.
  sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_NEAR(sample->energy_j(), 2500, 1e-9);

  // The device with a counter is unaffected.
  sample = gpus[1]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_FALSE(sample->energy_integrated());
}

TEST_F(NvmlGpuTest, SetPowerLimitInRangePersists) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  ASSERT_TRUE(gpus[0]->SetPowerLimit(175.5, clock_.Now()).ok());
  EXPECT_EQ(FieldOf(ReadFile(path_), 0, "limit_mw"), "175500");
  EXPECT_EQ(FieldOf(ReadFile(path_), 1, "limit_mw"), "300000");
  EXPECT_DOUBLE_EQ(gpus[0]->power_limit_w(), 175.5);
  absl::StatusOr<v1::DeviceSample> sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->power_cap_w(), 175.5);

  // The bounds themselves are allowed.
  EXPECT_TRUE(gpus[0]->SetPowerLimit(100, clock_.Now()).ok());
  EXPECT_TRUE(gpus[0]->SetPowerLimit(250, clock_.Now()).ok());
  EXPECT_EQ(FieldOf(ReadFile(path_), 0, "limit_mw"), "250000");
}

TEST_F(NvmlGpuTest, RestartedAgentSeesTheLimitLeftBehind) {
  {
    std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
    ASSERT_EQ(gpus.size(), 2u);
    ASSERT_TRUE(gpus[1]->SetPowerLimit(200, clock_.Now()).ok());
  }  // The library is unloaded with the last device.
  absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
      NvmlLibrary::Load(FakeLibraryPath());
  ASSERT_TRUE(nvml.ok()) << nvml.status();
  absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> gpus =
      DiscoverNvmlGpus(*nvml, clock_.Now());
  ASSERT_TRUE(gpus.ok()) << gpus.status();
  EXPECT_DOUBLE_EQ((*gpus)[1]->power_limit_w(), 200);
  // The agent restores the default the same way.
  const double default_w = (*gpus)[1]->Describe().power_limit_default_w();
  ASSERT_TRUE((*gpus)[1]->SetPowerLimit(default_w, clock_.Now()).ok());
  EXPECT_EQ(FieldOf(ReadFile(path_), 1, "limit_mw"), "300000");
}

TEST_F(NvmlGpuTest, SetPowerLimitOutOfRangeIsRefusedWithoutNvml) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  const std::string before = ReadFile(path_);
  for (double watts : {300.0, 99.9, 0.0, -5.0, std::nan("")}) {
    absl::Status status = gpus[0]->SetPowerLimit(watts, clock_.Now());
    EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << watts;
    EXPECT_THAT(status.message(), HasSubstr("[100, 250] W")) << watts;
    EXPECT_THAT(status.message(), HasSubstr("GPU 0 (GPU-0000-v100)"));
  }
  EXPECT_EQ(ReadFile(path_), before);
  EXPECT_DOUBLE_EQ(gpus[0]->power_limit_w(), 250);
}

TEST_F(NvmlGpuTest, InjectedFailureNamesTheFunctionAndSparesOtherDevices) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  state_.Line("fail nvmlDeviceGetTemperature 0 999");  // NVML_ERROR_UNKNOWN
  state_.gpu(0).Set("energy_mj", absl::StrCat(123456 + 10000));
  Write();

  absl::StatusOr<v1::DeviceSample> sample = gpus[0]->Sample(clock_.Now());
  ASSERT_FALSE(sample.ok());
  EXPECT_EQ(sample.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(sample.status().message(), HasSubstr("GPU 0 (GPU-0000-v100)"));
  EXPECT_THAT(sample.status().message(),
              HasSubstr("nvmlDeviceGetTemperature: Unknown Error"));

  sample = gpus[1]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->temp_c(), 30);

  // Once the fault clears the device samples again; the failed sample
  // committed nothing, so no energy is lost or counted twice.
  state_.ClearLines();
  Write();
  sample = gpus[0]->Sample(clock_.Now());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_DOUBLE_EQ(sample->energy_j(), 10);
}

TEST_F(NvmlGpuTest, LostGpuIsUnavailable) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  state_.Line("lost 1");
  Write();

  absl::StatusOr<v1::DeviceSample> sample = gpus[1]->Sample(clock_.Now());
  ASSERT_FALSE(sample.ok());
  EXPECT_EQ(sample.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(sample.status().message(),
              HasSubstr("GPU 1 (GPU-1111-a40): nvmlDeviceGetPowerUsage: "
                        "GPU is lost"));
  EXPECT_EQ(gpus[1]->SetPowerLimit(200, clock_.Now()).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(gpus[0]->Sample(clock_.Now()).ok());
}

TEST_F(NvmlGpuTest, DiscoveryFailsNamingALostDevice) {
  state_.Line("lost 1");
  Write();
  absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
      NvmlLibrary::Load(FakeLibraryPath());
  ASSERT_TRUE(nvml.ok()) << nvml.status();
  absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> gpus =
      DiscoverNvmlGpus(*nvml, clock_.Now());
  EXPECT_EQ(gpus.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(gpus.status().message(),
              HasSubstr("GPU 1: nvmlDeviceGetHandleByIndex_v2: GPU is lost"));
}

TEST_F(NvmlGpuTest, UnsupportedEnergyCounterAtDiscoveryIsNotAnError) {
  state_.gpu(1).Set("energy_supported", "0");
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_FALSE(static_cast<NvmlGpu&>(*gpus[0]).energy_integrated());
  EXPECT_TRUE(static_cast<NvmlGpu&>(*gpus[1]).energy_integrated());
}

TEST_F(NvmlGpuTest, LockAndResetClocksPersist) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  ASSERT_TRUE(gpus[0]->LockClocks(300, 1200).ok());
  EXPECT_EQ(FieldOf(ReadFile(path_), 0, "locked_sm"), "300-1200");
  EXPECT_EQ(FieldOf(ReadFile(path_), 1, "locked_sm"), "<absent>");
  // Samples keep working with the new field in the file.
  EXPECT_TRUE(gpus[0]->Sample(clock_.Now()).ok());

  ASSERT_TRUE(gpus[0]->ResetClocks().ok());
  EXPECT_EQ(FieldOf(ReadFile(path_), 0, "locked_sm"), "<absent>");
  // Everything else on the line survives the rewrites.
  EXPECT_EQ(FieldOf(ReadFile(path_), 0, "limit_mw"), "250000");
  EXPECT_THAT(ReadFile(path_), HasSubstr("name=\"Tesla V100-PCIE-16GB\""));

  EXPECT_EQ(gpus[0]->LockClocks(1200, 300).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpus[0]->LockClocks(0, 300).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NvmlGpuTest, SetterErrorsAreMapped) {
  std::vector<std::unique_ptr<GpuDevice>> gpus = Discover();
  ASSERT_EQ(gpus.size(), 2u);
  state_
      .Line("fail nvmlDeviceSetPowerManagementLimit * 4")  // NO_PERMISSION
      .Line("fail nvmlDeviceSetGpuLockedClocks 0 3");      // NOT_SUPPORTED
  Write();
  absl::Status status = gpus[1]->SetPowerLimit(200, clock_.Now());
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(),
              HasSubstr("nvmlDeviceSetPowerManagementLimit: Insufficient "
                        "Permissions"));
  EXPECT_DOUBLE_EQ(gpus[1]->power_limit_w(), 300);
  EXPECT_EQ(gpus[0]->LockClocks(300, 1200).code(),
            absl::StatusCode::kUnimplemented);
}

TEST(NvmlLibraryTest, MissingLibraryIsNotFound) {
  absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
      NvmlLibrary::Load("/nonexistent/libnvidia-ml.so.1");
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(nvml.status().message(),
              HasSubstr("/nonexistent/libnvidia-ml.so.1"));
}

TEST(NvmlLibraryTest, LibraryWithoutNvmlSymbolsIsFailedPrecondition) {
  absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
      NvmlLibrary::Load("libc.so.6");
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlInit_v2"));
}

TEST(NvmlLibraryTest, MissingStateFileFailsInitCleanly) {
  const std::string path =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/no_such_state");
  setenv("FAKE_NVML_STATE", path.c_str(), 1);
  absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
      NvmlLibrary::Load(FakeLibraryPath());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nvml.status().message(),
              HasSubstr("nvmlInit_v2: Driver Not Loaded"));

  unsetenv("FAKE_NVML_STATE");
  nvml = NvmlLibrary::Load(FakeLibraryPath());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(NvmlLibraryTest, GarbageStateFailsInitWithoutCrashing) {
  const std::string path =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/garbage_state");
  setenv("FAKE_NVML_STATE", path.c_str(), 1);
  const std::vector<std::string> garbage = {
      "device 0 name=\"unterminated\n",
      "device 0 power_mw=12abc\n",
      "device 0 power_mw=99999999999999999999999\n",
      "device 99\n",
      "device 1 power_mw=1\n",  // Index 0 missing.
      "device 0\ndevice 0\n",
      "device 0 colour=blue\n",
      "frobnicate 0\n",
      "fail nvmlInit_v2\n",
      "lost\n",
      absl::StrCat("device 0 name=\"", std::string(200, 'x'), "\"\n"),
      std::string(70 * 1024, 'x'),
      std::string("device 0\0 power_mw=1\n", 21),
  };
  for (const std::string& text : garbage) {
    WriteFile(path, text);
    absl::StatusOr<std::shared_ptr<NvmlLibrary>> nvml =
        NvmlLibrary::Load(FakeLibraryPath());
    EXPECT_EQ(nvml.status().code(), absl::StatusCode::kInternal)
        << text.substr(0, 60);
  }
}

TEST(NvmlReturnToStatusCodeTest, MapsTheCodesJouleDistinguishes) {
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_SUCCESS), absl::StatusCode::kOk);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_NOT_SUPPORTED),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_NO_PERMISSION),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_INVALID_ARGUMENT),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_GPU_IS_LOST),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_NOT_FOUND),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_DRIVER_NOT_LOADED),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_UNKNOWN),
            absl::StatusCode::kInternal);
  EXPECT_EQ(NvmlReturnToStatusCode(NVML_ERROR_TIMEOUT),
            absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace joule
