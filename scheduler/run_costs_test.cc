#include "scheduler/run_costs.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace joule {
namespace {

// A simulated class whose sample costs follow the model exactly: "v100" is
// 1.5x "a100", and each doubling of the batch saves 10 %.
double TrueCost(const std::string& model, int32_t batch) {
  return (model == "v100" ? 1.5 : 1.0) * std::pow(0.9, std::log2(batch / 64.0));
}

TEST(RunCostsTest, MeasuredCellsAreTheirMean) {
  RunCosts runs;
  ASSERT_TRUE(runs.Observe("resnet", "a100", 64, 2.0).ok());
  ASSERT_TRUE(runs.Observe("resnet", "a100", 64, 8.0).ok());
  std::vector<RunCostEstimate> estimates = runs.Predict("resnet", "a100", {64});
  ASSERT_EQ(estimates.size(), 1u);
  // The geometric mean: costs are modelled on the log scale.
  EXPECT_NEAR(estimates[0].joules_per_sample, 4.0, 1e-9);
  EXPECT_TRUE(estimates[0].measured);
  EXPECT_EQ(estimates[0].observations, 2);
  EXPECT_TRUE(runs.Predict("bert", "a100", {64}).empty());
}

TEST(RunCostsTest, UnmeasuredCombinationsAreModelledAcrossModelsAndBatches) {
  RunCosts runs;
  // a100 measured at 64 and 256, v100 only at 64.
  for (auto [model, batch] : std::vector<std::pair<std::string, int32_t>>{
           {"a100", 64}, {"a100", 256}, {"v100", 64}}) {
    ASSERT_TRUE(runs.Observe("resnet", model, batch, TrueCost(model, batch)).ok());
  }
  std::vector<RunCostEstimate> v100 = runs.Predict("resnet", "v100", {64, 256, 128});
  ASSERT_EQ(v100.size(), 3u);
  EXPECT_NEAR(v100[0].joules_per_sample, TrueCost("v100", 64), 1e-9);
  // v100 at 256: v100's factor times 256's, learned on a100.
  EXPECT_FALSE(v100[1].measured);
  EXPECT_NEAR(v100[1].joules_per_sample, TrueCost("v100", 256), 1e-6);
  // 128 was never measured: the mean batch factor stands in, and the error
  // is larger than for a combination of known factors.
  EXPECT_FALSE(v100[2].measured);
  EXPECT_GT(v100[2].relative_error, v100[1].relative_error);
  EXPECT_GT(v100[1].relative_error, v100[0].relative_error);
  // An unmeasured model gets the mean model factor: between the two.
  std::vector<RunCostEstimate> h100 = runs.Predict("resnet", "h100", {64});
  EXPECT_GT(h100[0].joules_per_sample, TrueCost("a100", 64));
  EXPECT_LT(h100[0].joules_per_sample, TrueCost("v100", 64));
}

TEST(RunCostsTest, UncertaintyShrinksWithData) {
  RunCosts runs;
  std::mt19937_64 gen(11);
  std::lognormal_distribution<double> noise(0, 0.2);
  std::vector<double> errors;
  for (int n = 1; n <= 64; ++n) {
    ASSERT_TRUE(runs.Observe("resnet", "a100", 128, TrueCost("a100", 128) * noise(gen)).ok());
    if (n == 1 || n == 4 || n == 16 || n == 64) {
      errors.push_back(runs.Predict("resnet", "a100", {128})[0].relative_error);
    }
  }
  for (size_t i = 1; i < errors.size(); ++i) {
    EXPECT_LT(errors[i], errors[i - 1]) << "after " << (1 << (2 * i)) << " runs";
  }
  // With 64 runs of 20 % noise the error of the mean is about 0.2 / 8.
  EXPECT_NEAR(errors.back(), 0.2 / 8, 0.01);
  EXPECT_NEAR(runs.Predict("resnet", "a100", {128})[0].joules_per_sample,
              TrueCost("a100", 128), 0.1 * TrueCost("a100", 128));
}

TEST(RunCostsTest, BadRunsAreRefused) {
  RunCosts runs;
  EXPECT_FALSE(runs.Observe("resnet", "a100", 64, 0).ok());
  EXPECT_FALSE(runs.Observe("resnet", "a100", 64, -1).ok());
  EXPECT_FALSE(runs.Observe("resnet", "a100", 64, std::nan("")).ok());
  EXPECT_FALSE(runs.Observe("resnet", "a100", 0, 1).ok());
  EXPECT_FALSE(runs.Observe("", "a100", 64, 1).ok());
  EXPECT_FALSE(runs.Observe("resnet", "a\n100", 64, 1).ok());
  EXPECT_EQ(runs.classes(), 0u);
}

TEST(RunCostsTest, StateRoundTripsAndCorruptionIsRefused) {
  RunCosts runs;
  ASSERT_TRUE(runs.Observe("resnet", "NVIDIA A100-SXM4-40GB", 64, 2.5).ok());
  ASSERT_TRUE(runs.Observe("resnet", "NVIDIA A100-SXM4-40GB", 64, 3.5).ok());
  ASSERT_TRUE(runs.Observe("resnet", "V100", 256, 1.25).ok());
  const std::string text = runs.SerializeClass("resnet");
  EXPECT_EQ(runs.SerializeClass("bert"), "");

  RunCosts restored;
  ASSERT_TRUE(restored.ParseClass("resnet", text).ok());
  EXPECT_EQ(restored.SerializeClass("resnet"), text);
  const RunCostEstimate before = runs.Predict("resnet", "V100", {64})[0];
  const RunCostEstimate after = restored.Predict("resnet", "V100", {64})[0];
  EXPECT_DOUBLE_EQ(before.joules_per_sample, after.joules_per_sample);
  EXPECT_DOUBLE_EQ(before.relative_error, after.relative_error);

  for (const std::string bad :
       {std::string("cell 64 1 0 0 V100\n"), text.substr(0, text.size() - 20),
        std::string("joule.RunCosts v1\ncell 64 0 0 0 V100\n"),
        std::string("joule.RunCosts v1\ncell 64 1 0 -1 V100\n"),
        std::string("joule.RunCosts v1\ncell 64 1 0 0 V100\ncell 64 1 0 0 V100\n"),
        std::string("joule.RunCosts v1\ncell 64 1 nan 0 V100\n")}) {
    EXPECT_EQ(restored.ParseClass("resnet", bad).code(), absl::StatusCode::kDataLoss) << bad;
  }
  EXPECT_EQ(restored.SerializeClass("resnet"), text);
}

}  // namespace
}  // namespace joule
