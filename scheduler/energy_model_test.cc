#include "scheduler/energy_model.h"

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// One GPU: 250 W at 100 samples/s, 150 W at 80, 100 W at 50 (per GPU J per
// sample: 2.5, 1.875, 2.0).
std::vector<CapPoint> OneGpu() { return {{250, 100, 250}, {150, 80, 150}, {100, 50, 100}}; }

TEST(EnergyModelTest, KeysKeepSeparatorsOutOfNames) {
  EXPECT_EQ(EnergyModel::Key("cifar/resnet", "RTX 6000", 2), "cifar_resnet@RTX_6000x2");
}

TEST(EnergyModelTest, AnotherGpuCountIsScaledFromTheNearestMeasured) {
  EnergyModel model;
  model.Put(EnergyModel::Key("c", "V100", 1), OneGpu());
  model.Put(EnergyModel::Key("c", "V100", 8), OneGpu());
  EXPECT_NE(model.Measured("c", "V100", 1), nullptr);
  EXPECT_EQ(model.Measured("c", "V100", 2), nullptr);
  int measured = 0;
  std::optional<std::vector<CapPoint>> two = model.ForGpus("c", "V100", 2, &measured);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(measured, 1);  // in log scale 2 is nearer to 1 than to 8
  EXPECT_DOUBLE_EQ((*two)[0].throughput, 200);
  EXPECT_DOUBLE_EQ((*two)[0].power_w, 500);
  EXPECT_DOUBLE_EQ((*two)[0].cap_w, 250);  // caps are per GPU
  model.ForGpus("c", "V100", 6, &measured);
  EXPECT_EQ(measured, 8);
  EXPECT_FALSE(model.ForGpus("c", "A40", 1).has_value());
  EXPECT_FALSE(model.ForGpus("other", "V100", 1).has_value());
  // "c" is not a prefix match for class "cx".
  EXPECT_FALSE(model.ForGpus("cx", "V100", 1).has_value());
}

TEST(EnergyModelTest, PredictionsCountStaticPowerAndDoNotDependOnTheGpuCount) {
  EnergyModel model;
  model.Put(EnergyModel::Key("c", "V100", 1), OneGpu());
  const v1::Objective least_energy;
  // GPU energy only: 150 W (1.875 J per sample).
  absl::StatusOr<EnergyPrediction> gpu_only =
      model.Predict("c", "V100", 1, least_energy, 100, /*caps_count_static=*/false, kNow);
  ASSERT_TRUE(gpu_only.ok()) << gpu_only.status();
  EXPECT_EQ(gpu_only->decision.cap_w, 150);
  EXPECT_DOUBLE_EQ(gpu_only->gpu_joules_per_sample, 1.875);
  EXPECT_DOUBLE_EQ(gpu_only->joules_per_sample, 250.0 / 80);
  // With 100 W of static power counted: 150 W still (250/80 = 3.125 J per
  // sample against 350/100 = 3.5 at 250 W and 200/50 = 4 at 100 W).
  absl::StatusOr<EnergyPrediction> whole =
      model.Predict("c", "V100", 1, least_energy, 100, /*caps_count_static=*/true, kNow);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->decision.cap_w, 150);
  EXPECT_THAT(whole->decision.reason, HasSubstr("static power"));
  // With 400 W of static power the fastest cap is cheapest in all.
  whole = model.Predict("c", "V100", 1, least_energy, 400, true, kNow);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->decision.cap_w, 250);
  // Eight GPUs from the one-GPU profile: the same cap and joules per sample.
  absl::StatusOr<EnergyPrediction> eight =
      model.Predict("c", "V100", 8, least_energy, 800, false, kNow);
  ASSERT_TRUE(eight.ok());
  EXPECT_EQ(eight->decision.cap_w, 150);
  EXPECT_DOUBLE_EQ(eight->gpu_joules_per_sample, 1.875);
  EXPECT_DOUBLE_EQ(eight->samples_per_second, 640);
  EXPECT_EQ(eight->measured_gpus, 1);
  EXPECT_EQ(model.Predict("c", "A40", 1, least_energy, 0, false, kNow).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(EnergyModelTest, PredictionsCarryWholeRunsAtTheBatchSizeAskedFor) {
  EnergyModel model;
  model.Put(EnergyModel::Key("c", "V100", 1), OneGpu());
  const v1::Objective least_energy;
  // No batch size asked for, or no runs yet: profile only.
  absl::StatusOr<EnergyPrediction> plain =
      model.Predict("c", "V100", 1, least_energy, 0, false, kNow);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->at_batch.has_value());
  EXPECT_FALSE(model.Predict("c", "V100", 1, least_energy, 0, false, kNow, "job", 64)
                   ->at_batch.has_value());
  ASSERT_TRUE(model.runs().Observe("job", "V100", 64, 3.0).ok());
  ASSERT_TRUE(model.runs().Observe("job", "V100", 64, 3.0).ok());
  absl::StatusOr<EnergyPrediction> at_64 =
      model.Predict("c", "V100", 1, least_energy, 0, false, kNow, "job", 64);
  ASSERT_TRUE(at_64.ok());
  ASSERT_TRUE(at_64->at_batch.has_value());
  EXPECT_DOUBLE_EQ(at_64->at_batch->joules_per_sample, 3.0);
  EXPECT_TRUE(at_64->at_batch->measured);
  EXPECT_EQ(at_64->at_batch->observations, 2);
  // The profile's cap choice is unchanged by the runs.
  EXPECT_EQ(at_64->decision.cap_w, plain->decision.cap_w);
}

}  // namespace
}  // namespace joule
