#include "examples/mlp.h"

#include <cmath>
#include <vector>

#include "examples/synthetic_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::examples {
namespace {

TEST(SyntheticDataTest, SameSeedSameShardSameData) {
  ClusterMixture a(7), b(7);
  Dataset x = a.Shard(3, 64);
  Dataset y = b.Shard(3, 64);
  EXPECT_EQ(x.features, y.features);
  EXPECT_EQ(x.labels, y.labels);
}

TEST(SyntheticDataTest, ShardsSeedsAndValidationDiffer) {
  ClusterMixture mixture(7);
  const Dataset shard0 = mixture.Shard(0, 64);
  EXPECT_NE(shard0.features, mixture.Shard(1, 64).features);
  EXPECT_NE(shard0.features, mixture.Validation(64).features);
  EXPECT_NE(shard0.features, ClusterMixture(8).Shard(0, 64).features);
}

TEST(SyntheticDataTest, UsesEveryClass) {
  const Dataset data = ClusterMixture(1).Shard(0, 1000);
  std::vector<int> counts(Mlp::kClasses, 0);
  for (int label : data.labels) {
    ASSERT_GE(label, 0);
    ASSERT_LT(label, Mlp::kClasses);
    ++counts[label];
  }
  for (int count : counts) EXPECT_GT(count, 50);
}

TEST(CrossEntropyTest, UniformLogitsGiveLogOfClassCount) {
  std::vector<float> logits(10, 3.0f);
  EXPECT_NEAR(CrossEntropy(logits.data(), 10, 4), std::log(10.0), 1e-6);
  logits[4] = 100.0f;  // Large logits must not overflow.
  EXPECT_NEAR(CrossEntropy(logits.data(), 10, 4), 0.0, 1e-6);
  EXPECT_EQ(ArgMax(logits.data(), 10), 4);
}

// Compares the analytic gradient with central finite differences for a
// sample of parameters in every layer; a wrong backward pass fails here.
TEST(MlpTest, GradientsMatchFiniteDifferences) {
  Mlp model(3);
  const Dataset data = ClusterMixture(3).Shard(0, 8);
  model.ComputeGradients(data.features.data(), data.labels.data(), data.size());
  const std::vector<DenseLayer> analytic = model.gradients();

  const float eps = 2e-3f;
  int checked = 0;
  for (size_t l = 0; l < model.layers().size(); ++l) {
    for (int pick = 0; pick < 6; ++pick) {
      const bool bias = pick % 3 == 2;
      std::vector<float>& params =
          bias ? model.layers()[l].bias : model.layers()[l].weights;
      const size_t j = (pick * 7919u + l * 104729u) % params.size();
      const float saved = params[j];
      params[j] = saved + eps;
      const double plus = model.ComputeGradients(
          data.features.data(), data.labels.data(), data.size());
      params[j] = saved - eps;
      const double minus = model.ComputeGradients(
          data.features.data(), data.labels.data(), data.size());
      params[j] = saved;
      const double numeric = (plus - minus) / (2.0 * eps);
      const double exact =
          bias ? analytic[l].bias[j] : analytic[l].weights[j];
      EXPECT_NEAR(exact, numeric, 2e-3 + 0.05 * std::fabs(numeric))
          << "layer " << l << (bias ? " bias " : " weight ") << j;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 18);
}

TEST(MlpTest, TrainingReducesLoss) {
  Mlp model(5);
  ClusterMixture mixture(5);
  const Dataset train = mixture.Shard(0, 512);
  const Dataset validation = mixture.Validation(256);
  const double before = model.Evaluate(validation).loss;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int start = 0; start < train.size(); start += 32) {
      model.TrainStep(train.row(start), train.labels.data() + start, 32, 0.02f,
                      0.9f);
    }
  }
  const Evaluation after = model.Evaluate(validation);
  EXPECT_LT(after.loss, before * 0.7);
  EXPECT_GT(after.accuracy, 0.5);
}

TEST(MlpTest, OutputsDoNotDependOnBatching) {
  Mlp model(9);
  const Dataset data = ClusterMixture(9).Shard(2, 10);
  std::vector<float> all;
  model.Forward(data.features.data(), data.size(), &all);
  std::vector<float> one;
  for (int i = 0; i < data.size(); ++i) {
    model.Forward(data.row(i), 1, &one);
    for (int c = 0; c < Mlp::kClasses; ++c) {
      EXPECT_EQ(one[c], all[i * Mlp::kClasses + c]) << "sample " << i;
    }
  }
}

}  // namespace
}  // namespace joule::examples
