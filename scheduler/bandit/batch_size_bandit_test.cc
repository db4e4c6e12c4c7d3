#include "scheduler/bandit/batch_size_bandit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------
// CandidateBatchSizes

struct CandidateCase {
  int32_t min;
  int32_t default_size;
  int32_t max;
  std::vector<int32_t> want;
};

TEST(CandidateBatchSizesTest, Table) {
  const std::vector<CandidateCase> cases = {
      // Small range: all powers of two fit.
      {8, 32, 128, {8, 16, 32, 64, 128}},
      // Non-power-of-two bounds and default.
      {10, 24, 100, {10, 16, 24, 32, 64, 100}},
      // Wide range: 11 powers of two; keep 1, 32, 1024 and the 5 nearest 32.
      {1, 32, 1024, {1, 4, 8, 16, 32, 64, 128, 1024}},
      // Default at the bottom of a wide range: nearest powers are above it.
      {1, 1, 4096, {1, 2, 4, 8, 16, 32, 64, 4096}},
      // A fixed batch size.
      {32, 32, 32, {32}},
      // Unset range (all zero): min taken as 1.
      {0, 0, 0, {1}},
      // Default outside the range is clamped to it.
      {16, 1000, 64, {16, 32, 64}},
      // max < min: taken as min.
      {64, 48, 16, {64}},
      // Large values do not overflow.
      {1 << 29, 1 << 30, 2147483647, {1 << 29, 1 << 30, 2147483647}},
  };
  for (const CandidateCase& c : cases) {
    EXPECT_THAT(CandidateBatchSizes(c.min, c.default_size, c.max),
                ElementsAreArray(c.want))
        << "min=" << c.min << " default=" << c.default_size << " max=" << c.max;
  }
}

TEST(CandidateBatchSizesTest, InvariantsOverManyRanges) {
  for (int32_t min : {1, 3, 8, 17, 100}) {
    for (int32_t max : {min, min + 1, 2 * min, 64 * min, 100000}) {
      for (int32_t def : {min, (min + max) / 2, max}) {
        std::vector<int32_t> got = CandidateBatchSizes(min, def, max);
        SCOPED_TRACE(testing::Message()
                     << "min=" << min << " default=" << def << " max=" << max);
        ASSERT_FALSE(got.empty());
        EXPECT_LE(got.size(), static_cast<size_t>(kMaxCandidateBatchSizes));
        EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
        EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end());
        EXPECT_EQ(got.front(), min);
        EXPECT_EQ(got.back(), max);
        EXPECT_NE(std::find(got.begin(), got.end(), def), got.end());
      }
    }
  }
  EXPECT_THAT(CandidateBatchSizes(1, 32, 1024, /*max_count=*/4),
              ElementsAre(1, 16, 32, 1024));
}

// ---------------------------------------------------------------------------
// BatchSizeBandit helpers

// Runs `rounds` recurrences of a synthetic job whose cost with batch size b is
// Normal(true_cost[b], noise_std). The bandit and the noise have separate
// seeded engines so that the bandit's draws alone decide its choices.
struct SimulationResult {
  std::vector<int32_t> choices;
  // Expected-cost regret of each choice: true_cost[choice] - min true cost.
  std::vector<double> regret;
};

SimulationResult Simulate(BatchSizeBandit& bandit,
                          const std::map<int32_t, double>& true_cost,
                          double noise_std, uint32_t seed, int rounds) {
  std::mt19937 bandit_gen(seed);
  std::mt19937 noise_gen(seed * 7919 + 17);
  double best = kInf;
  for (const auto& [arm, cost] : true_cost) best = std::min(best, cost);
  SimulationResult result;
  for (int round = 0; round < rounds; ++round) {
    absl::StatusOr<int32_t> arm = bandit.Choose(bandit_gen);
    EXPECT_TRUE(arm.ok()) << arm.status();
    if (!arm.ok()) return result;
    const double mean = true_cost.at(*arm);
    const double cost =
        std::max(0.0, absl::Gaussian<double>(noise_gen, mean, noise_std));
    EXPECT_TRUE(bandit.Observe(*arm, cost).ok());
    result.choices.push_back(*arm);
    result.regret.push_back(mean - best);
  }
  return result;
}

// Batch size 16 is best (80 J); the default 32 is the worst.
const std::map<int32_t, double>& FourArmCosts() {
  static const auto* costs =
      new std::map<int32_t, double>{{8, 100}, {16, 80}, {32, 120}, {64, 95}};
  return *costs;
}

BatchSizeBandit FourArmBandit(BatchSizeBanditOptions options = {}) {
  return BatchSizeBandit({8, 16, 32, 64}, 32, options);
}

// ---------------------------------------------------------------------------
// Exploration

TEST(BatchSizeBanditTest, UnobservedArmsAreTriedFirstStartingFromDefault) {
  BatchSizeBandit bandit({8, 16, 32, 64, 128}, 32);
  std::mt19937 gen(1);
  std::vector<int32_t> chosen;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<int32_t> arm = bandit.Choose(gen);
    ASSERT_TRUE(arm.ok()) << arm.status();
    chosen.push_back(*arm);
    // Costs that would make any greedy rule stick to the first arm.
    ASSERT_TRUE(bandit.Observe(*arm, chosen.size() == 1 ? 1.0 : 1000.0).ok());
  }
  // Default, then outward by log distance, the smaller batch first on ties.
  EXPECT_THAT(chosen, ElementsAre(32, 16, 64, 8, 128));
}

TEST(BatchSizeBanditTest, ExplorationIgnoresArmsObservedOutOfOrder) {
  BatchSizeBandit bandit({8, 16, 32, 64}, 32);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(bandit.Observe(32, 1.0).ok());
  ASSERT_TRUE(bandit.Observe(64, 1.0).ok());
  std::mt19937 gen(3);
  // 16 is the next unobserved arm, however good 32 looks.
  EXPECT_EQ(bandit.Choose(gen).value(), 16);
  ASSERT_TRUE(bandit.Observe(16, 500.0).ok());
  EXPECT_EQ(bandit.Choose(gen).value(), 8);
}

TEST(BatchSizeBanditTest, ExplorationUsesNoRandomness) {
  BatchSizeBandit a({8, 16, 32, 64}, 16);
  BatchSizeBandit b({8, 16, 32, 64}, 16);
  std::mt19937 gen_a(1);
  std::mt19937 gen_b(999);
  for (int i = 0; i < 4; ++i) {
    const int32_t arm_a = a.Choose(gen_a).value();
    EXPECT_EQ(arm_a, b.Choose(gen_b).value());
    ASSERT_TRUE(a.Observe(arm_a, 10).ok());
    ASSERT_TRUE(b.Observe(arm_a, 10).ok());
  }
}

TEST(BatchSizeBanditTest, DefaultNotAnArmStartsFromNearestArm) {
  BatchSizeBandit bandit({8, 24, 128}, 32);
  std::mt19937 gen(1);
  EXPECT_EQ(bandit.Choose(gen).value(), 24);
}

// ---------------------------------------------------------------------------
// Learning

TEST(BatchSizeBanditTest, ConvergesToBestArmForSeveralSeeds) {
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u}) {
    BatchSizeBandit bandit = FourArmBandit();
    SimulationResult result =
        Simulate(bandit, FourArmCosts(), /*noise_std=*/10, seed, 200);
    ASSERT_EQ(result.choices.size(), 200u);
    const int best_in_last_50 =
        std::count(result.choices.end() - 50, result.choices.end(), 16);
    EXPECT_GE(best_in_last_50, 40) << "seed " << seed;
    EXPECT_EQ(bandit.BestMean(), 16) << "seed " << seed;
  }
}

TEST(BatchSizeBanditTest, RegretGrowsSublinearly) {
  for (uint32_t seed : {11u, 12u, 13u, 14u, 15u}) {
    BatchSizeBandit bandit = FourArmBandit();
    SimulationResult result =
        Simulate(bandit, FourArmCosts(), /*noise_std=*/10, seed, 200);
    ASSERT_EQ(result.regret.size(), 200u);
    double first_half = 0;
    double second_half = 0;
    for (int i = 0; i < 100; ++i) first_half += result.regret[i];
    for (int i = 100; i < 200; ++i) second_half += result.regret[i];
    // Exploring all arms alone costs 20 + 40 + 15 = 75 J of regret.
    EXPECT_GE(first_half, 75) << "seed " << seed;
    // Linear regret would make the halves about equal.
    EXPECT_LT(second_half, 0.5 * first_half) << "seed " << seed;
  }
}

TEST(BatchSizeBanditTest, UnluckyFirstObservationOfBestArmDoesNotLockItOut) {
  for (uint32_t seed : {21u, 22u, 23u, 24u}) {
    BatchSizeBandit bandit = FourArmBandit();
    // The best arm's first run came out 2.5 noise standard deviations high,
    // worse than the runner-up's true mean.
    ASSERT_TRUE(bandit.Observe(16, 105).ok());
    SimulationResult result =
        Simulate(bandit, FourArmCosts(), /*noise_std=*/10, seed, 200);
    const int best_in_last_50 =
        std::count(result.choices.end() - 50, result.choices.end(), 16);
    EXPECT_GE(best_in_last_50, 40) << "seed " << seed;
  }
}

TEST(BatchSizeBanditTest, LuckyFirstObservationOfBadArmDoesNotLockItIn) {
  for (uint32_t seed : {31u, 32u, 33u}) {
    BatchSizeBandit bandit = FourArmBandit();
    // The worst arm's first run looked far better than anything else.
    ASSERT_TRUE(bandit.Observe(32, 40).ok());
    SimulationResult result =
        Simulate(bandit, FourArmCosts(), /*noise_std=*/10, seed, 200);
    const int worst_in_last_50 =
        std::count(result.choices.end() - 50, result.choices.end(), 32);
    const int best_in_last_50 =
        std::count(result.choices.end() - 50, result.choices.end(), 16);
    EXPECT_EQ(worst_in_last_50, 0) << "seed " << seed;
    EXPECT_GE(best_in_last_50, 40) << "seed " << seed;
  }
}

TEST(BatchSizeBanditTest, ThompsonSamplingStillExploresCloseArms) {
  // Two arms with overlapping posteriors: both must be chosen sometimes.
  BatchSizeBandit bandit({16, 32}, 32);
  for (double cost : {100.0, 90.0, 110.0}) {
    ASSERT_TRUE(bandit.Observe(16, cost).ok());
  }
  for (double cost : {104.0, 94.0, 114.0}) {
    ASSERT_TRUE(bandit.Observe(32, cost).ok());
  }
  std::mt19937 gen(5);
  std::map<int32_t, int> counts;
  for (int i = 0; i < 1000; ++i) ++counts[bandit.Choose(gen).value()];
  EXPECT_GT(counts[16], counts[32]);
  EXPECT_GT(counts[32], 100);
}

TEST(BatchSizeBanditTest, ChoicesAreDeterministicForASeed) {
  BatchSizeBandit a = FourArmBandit();
  BatchSizeBandit b = FourArmBandit();
  SimulationResult ra = Simulate(a, FourArmCosts(), 10, 42, 100);
  SimulationResult rb = Simulate(b, FourArmCosts(), 10, 42, 100);
  EXPECT_EQ(ra.choices, rb.choices);
  EXPECT_EQ(a.Serialize(), b.Serialize());
}

TEST(BatchSizeBanditTest, BestMeanAndNoiseEstimate) {
  BatchSizeBandit bandit({8, 16, 32}, 16);
  EXPECT_EQ(bandit.BestMean(), 16);  // nothing observed: the default
  EXPECT_EQ(bandit.NoiseStd(), 0);
  ASSERT_TRUE(bandit.Observe(32, 50).ok());
  EXPECT_EQ(bandit.BestMean(), 32);  // the only observed arm
  ASSERT_TRUE(bandit.Observe(32, 70).ok());
  ASSERT_TRUE(bandit.Observe(8, 40).ok());
  ASSERT_TRUE(bandit.Observe(8, 60).ok());
  EXPECT_EQ(bandit.BestMean(), 8);  // 50 < 60
  // Overall mean 55, prior std 5.5 worth 2 dof; within SS 200 + 200 on 2 dof.
  EXPECT_NEAR(bandit.NoiseStd(), std::sqrt((2 * 5.5 * 5.5 + 400) / 4), 1e-9);

  std::vector<BatchSizeArmSummary> summaries = bandit.Summaries();
  ASSERT_EQ(summaries.size(), 3u);
  EXPECT_EQ(summaries[0].batch_size, 8);
  EXPECT_EQ(summaries[0].observations, 2);
  EXPECT_DOUBLE_EQ(summaries[0].mean, 50);
  EXPECT_NEAR(summaries[0].std, bandit.NoiseStd() / std::sqrt(2.0), 1e-9);
  EXPECT_EQ(summaries[1].observations, 0);
  EXPECT_EQ(summaries[1].std, 0);
}

TEST(BatchSizeBanditTest, ExplainListsEveryArm) {
  BatchSizeBandit bandit({8, 16, 32}, 16);
  ASSERT_TRUE(bandit.Observe(8, 40).ok());
  ASSERT_TRUE(bandit.Observe(16, 90).ok());
  const std::string text = bandit.Explain();
  EXPECT_THAT(text, HasSubstr("default 16"));
  EXPECT_THAT(text, HasSubstr("best 8"));
  EXPECT_THAT(text, HasSubstr("untried"));
  // Header plus one line per arm.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
}

// ---------------------------------------------------------------------------
// Pruning

// Arm 8 is 8% worse than arm 16 with noisy observations, so plain Thompson
// sampling still picks it now and then; arm 32 is bad but has one observation.
void FeedPruningFixture(BatchSizeBandit& bandit) {
  for (double cost : {98.0, 118.0}) ASSERT_TRUE(bandit.Observe(8, cost).ok());
  for (double cost : {90.0, 110.0}) ASSERT_TRUE(bandit.Observe(16, cost).ok());
  ASSERT_TRUE(bandit.Observe(32, 300).ok());
}

int CountChoices(BatchSizeBandit& bandit, int32_t arm, uint32_t seed) {
  std::mt19937 gen(seed);
  int count = 0;
  for (int i = 0; i < 500; ++i) count += bandit.Choose(gen).value() == arm;
  return count;
}

TEST(BatchSizeBanditTest, PruningStopsChoosingClearlyWorseArms) {
  BatchSizeBandit unpruned({8, 16, 32}, 16);
  FeedPruningFixture(unpruned);
  EXPECT_GT(CountChoices(unpruned, 8, 7), 50);

  BatchSizeBanditOptions options;
  options.prune_factor = 1.05;
  options.prune_min_observations = 2;
  BatchSizeBandit pruned({8, 16, 32}, 16, options);
  FeedPruningFixture(pruned);
  EXPECT_EQ(CountChoices(pruned, 8, 7), 0);
  std::vector<BatchSizeArmSummary> summaries = pruned.Summaries();
  EXPECT_TRUE(summaries[0].pruned);   // 108 > 1.05 x 100 after 2 runs
  EXPECT_FALSE(summaries[1].pruned);  // the best
  EXPECT_FALSE(summaries[2].pruned);  // only 1 run: not enough to prune
  EXPECT_THAT(pruned.Explain(), HasSubstr("pruned"));
  EXPECT_EQ(pruned.BestMean(), 16);
}

TEST(BatchSizeBanditTest, PruningNeedsEnoughObservations) {
  BatchSizeBanditOptions options;
  options.prune_factor = 1.05;
  options.prune_min_observations = 3;
  BatchSizeBandit bandit({8, 16, 32}, 16, options);
  FeedPruningFixture(bandit);  // two runs each: below the threshold
  EXPECT_GT(CountChoices(bandit, 8, 7), 50);
  ASSERT_TRUE(bandit.Observe(8, 108).ok());
  ASSERT_TRUE(bandit.Observe(16, 100).ok());
  EXPECT_EQ(CountChoices(bandit, 8, 7), 0);
}

TEST(BatchSizeBanditTest, UntriedArmsInFlightAreNotHandedOutAgain) {
  BatchSizeBandit bandit({8, 16, 32}, 16);
  std::mt19937_64 gen(1);
  // 16 (the default) is running: the next arm in exploration order.
  EXPECT_EQ(bandit.Choose(gen, {16}).value(), 8);
  EXPECT_EQ(bandit.Choose(gen, {16, 8}).value(), 32);
  // Every untried arm in flight and nothing measured: the default.
  EXPECT_EQ(bandit.Choose(gen, {16, 8, 32}).value(), 16);
  // Entries that are not arms are ignored.
  EXPECT_EQ(bandit.Choose(gen, {7, 1000}).value(), 16);
}

TEST(BatchSizeBanditTest, WithoutExplorationTheBestMeasuredArm) {
  BatchSizeBandit bandit({8, 16, 32}, 16);
  std::mt19937_64 gen(1);
  // Nothing measured: the default, not an untried arm.
  EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false).value(), 16);
  ASSERT_TRUE(bandit.Observe(16, 100).ok());
  ASSERT_TRUE(bandit.Observe(8, 90).ok());
  ASSERT_TRUE(bandit.Observe(8, 95).ok());
  // 32 is untried and 16 is close: exploitation still takes 8, every time.
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false).value(), 8);
  }
}

TEST(BatchSizeBanditTest, ExploitationPrefersAKnownCostToOneLuckyRun) {
  BatchSizeBandit bandit({8, 16}, 16);
  std::mt19937_64 gen(1);
  // 16: five runs around 100. 8: one run at 98, within the noise.
  for (double cost : {90.0, 110.0, 95.0, 105.0, 100.0}) ASSERT_TRUE(bandit.Observe(16, cost).ok());
  ASSERT_TRUE(bandit.Observe(8, 98).ok());
  EXPECT_EQ(bandit.BestMean(), 8);
  EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false).value(), 16);
  // Four more runs confirm 8 is cheaper: now it is exploited.
  for (double cost : {85.0, 80.0, 90.0, 82.0}) ASSERT_TRUE(bandit.Observe(8, cost).ok());
  EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false).value(), 8);
}

TEST(BatchSizeBanditTest, RunsInFlightNarrowThompsonDraws) {
  // Two arms with one noisy observation each: alone they are drawn about
  // evenly. With many runs of the better one in flight, its draw concentrates
  // on its mean and the worse one is drawn less often than without them.
  auto count_worse = [](std::vector<int32_t> in_flight) {
    BatchSizeBandit bandit({8, 16}, 16);
    EXPECT_TRUE(bandit.Observe(16, 100).ok());
    EXPECT_TRUE(bandit.Observe(8, 104).ok());
    std::mt19937_64 gen(5);
    int worse = 0;
    for (int i = 0; i < 2000; ++i) worse += bandit.Choose(gen, in_flight).value() == 8;
    return worse;
  };
  const int alone = count_worse({});
  const int believed = count_worse(std::vector<int32_t>(20, 16));
  EXPECT_GT(alone, 500);
  EXPECT_LT(believed, alone);
}

TEST(BatchSizeBanditTest, ScalesWeighTheLearnedCost) {
  // Learned: 8 costs 100, 16 costs 120 (many runs each, little noise). Scaled
  // by 1.5 and 1.0 (the other factor of the cost, known to the caller) 16
  // wins, when exploring and when not; pruning compares scaled costs too.
  BatchSizeBanditOptions options;
  options.prune_factor = 1.3;
  BatchSizeBandit bandit({8, 16}, 16, options);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(bandit.Observe(8, 100 + (i % 2)).ok());
    ASSERT_TRUE(bandit.Observe(16, 120 + (i % 2)).ok());
  }
  std::mt19937_64 gen(3);
  const std::vector<double> scales = {1.5, 1.0};
  EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false).value(), 8);
  EXPECT_EQ(bandit.Choose(gen, {}, /*explore=*/false, scales).value(), 16);
  int sixteen = 0;
  for (int i = 0; i < 200; ++i) sixteen += bandit.Choose(gen, {}, true, scales).value() == 16;
  EXPECT_EQ(sixteen, 200);
  // 8 at 2.0: 200 against 120, pruned; unscaled neither is.
  EXPECT_EQ(bandit.Choose(gen, {}, true, std::vector<double>{2.0, 1.0}).value(), 16);
  for (const BatchSizeArmSummary& arm : bandit.Summaries()) EXPECT_FALSE(arm.pruned);
  // Scales must be one positive finite number per arm.
  EXPECT_EQ(bandit.Choose(gen, {}, true, std::vector<double>{1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bandit.Choose(gen, {}, true, std::vector<double>{1.0, 0.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bandit.Choose(gen, {}, true, std::vector<double>{1.0, std::nan("")})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Bad input

TEST(BatchSizeBanditTest, ObserveRejectsBadInputAndKeepsState) {
  BatchSizeBandit bandit({8, 16}, 8);
  ASSERT_TRUE(bandit.Observe(8, 10).ok());
  const std::string before = bandit.Serialize();
  for (double cost : {kNaN, kInf, -kInf, -1.0, 2e18}) {
    EXPECT_EQ(bandit.Observe(8, cost).code(),
              absl::StatusCode::kInvalidArgument)
        << cost;
  }
  EXPECT_EQ(bandit.Observe(12, 10).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bandit.Observe(0, 10).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bandit.Serialize(), before);
  EXPECT_TRUE(bandit.Observe(16, 0).ok());  // zero cost is allowed
}

TEST(BatchSizeBanditTest, ChooseWithoutArmsFails) {
  BatchSizeBandit bandit({}, 32);
  std::mt19937 gen(1);
  EXPECT_EQ(bandit.Choose(gen).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bandit.BestMean(), 0);
  // Non-positive arms are dropped by the lenient constructor.
  BatchSizeBandit negative({-8, 0}, 0);
  EXPECT_EQ(negative.Choose(gen).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(BatchSizeBanditTest, CreateValidates) {
  EXPECT_TRUE(BatchSizeBandit::Create({8, 16, 16}, 16).ok());
  EXPECT_EQ(BatchSizeBandit::Create({8, 16, 16}, 16)->arms(),
            std::vector<int32_t>({8, 16}));
  EXPECT_EQ(BatchSizeBandit::Create({}, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchSizeBandit::Create({0, 16}, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchSizeBandit::Create({8, 16}, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (double factor : {0.5, -1.0, kNaN, kInf}) {
    BatchSizeBanditOptions options;
    options.prune_factor = factor;
    EXPECT_EQ(BatchSizeBandit::Create({8}, 8, options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << factor;
  }
  BatchSizeBanditOptions options;
  options.prune_min_observations = 0;
  EXPECT_EQ(BatchSizeBandit::Create({8}, 8, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.prior_relative_noise = -0.1;
  EXPECT_EQ(BatchSizeBandit::Create({8}, 8, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.prior_noise_dof = kNaN;
  EXPECT_EQ(BatchSizeBandit::Create({8}, 8, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Serialization

TEST(BatchSizeBanditTest, SerializationRoundTripPreservesChoices) {
  BatchSizeBanditOptions options;
  options.prune_factor = 1.5;
  options.prune_min_observations = 3;
  options.prior_relative_noise = 0.15;
  BatchSizeBandit original = FourArmBandit(options);
  Simulate(original, FourArmCosts(), 10, 77, 30);

  const std::string saved = original.Serialize();
  absl::StatusOr<BatchSizeBandit> restored = BatchSizeBandit::Parse(saved);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->Serialize(), saved);
  EXPECT_EQ(restored->Explain(), original.Explain());
  EXPECT_EQ(restored->default_arm(), 32);
  EXPECT_EQ(restored->options().prune_factor, 1.5);
  EXPECT_EQ(restored->NoiseStd(), original.NoiseStd());  // bit for bit

  SimulationResult a = Simulate(original, FourArmCosts(), 10, 78, 60);
  SimulationResult b = Simulate(*restored, FourArmCosts(), 10, 78, 60);
  EXPECT_EQ(a.choices, b.choices);
  EXPECT_EQ(original.Serialize(), restored->Serialize());
}

TEST(BatchSizeBanditTest, SerializationRoundTripOfFreshBandit) {
  BatchSizeBandit fresh({4, 8, 1024}, 8);
  absl::StatusOr<BatchSizeBandit> restored =
      BatchSizeBandit::Parse(fresh.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  std::mt19937 gen(1);
  EXPECT_EQ(restored->Choose(gen).value(), 8);
  EXPECT_EQ(restored->arms(), fresh.arms());
}

TEST(BatchSizeBanditTest, ParseRejectsGarbageWithDataLoss) {
  BatchSizeBandit bandit({8, 16}, 16);
  ASSERT_TRUE(bandit.Observe(8, 10).ok());
  ASSERT_TRUE(bandit.Observe(8, 12).ok());
  const std::string good = bandit.Serialize();
  ASSERT_TRUE(BatchSizeBandit::Parse(good).ok());

  const std::string truncated = good.substr(0, good.rfind("end"));
  const std::vector<std::string> garbage = {
      "",
      "hello",
      std::string("\0\1\2\3", 4),
      truncated,
      good.substr(0, good.size() / 2),
      absl::StrReplaceAll(good, {{"v1", "v2"}}),
      absl::StrReplaceAll(good, {{"default_arm 16", "default_arm x"}}),
      absl::StrReplaceAll(good, {{"default_arm 16", "default_arm -16"}}),
      absl::StrReplaceAll(good, {{"prune_factor 0", "prune_factor 0.5"}}),
      absl::StrReplaceAll(good, {{"prune_factor 0", "prune_factor nan"}}),
      absl::StrReplaceAll(good, {{"arm 8 2 ", "arm 8 -2 "}}),
      absl::StrReplaceAll(good, {{"arm 8 2 11 ", "arm 8 2 nan "}}),
      absl::StrReplaceAll(good, {{"arm 8 2 11 ", "arm 8 2 inf "}}),
      absl::StrReplaceAll(good, {{"arm 8 2 11 ", "arm 8 2 -11 "}}),
      absl::StrReplaceAll(good, {{"arm 16 0 0 0", "arm 16 0 5 0"}}),
      absl::StrReplaceAll(good, {{"arm 16 0 0 0", "arm 16 1 5 3"}}),
      absl::StrReplaceAll(good, {{"arm 16 ", "arm 8 "}}),  // duplicate
      absl::StrReplaceAll(good, {{"arm 16 0 0 0", "arm 16 0 0"}}),
      absl::StrReplaceAll(good, {{"arm 16 0 0 0", "arm 16 0 0 0 0"}}),
      absl::StrReplaceAll(good, {{"end", "end\nextra"}}),
  };
  for (const std::string& data : garbage) {
    EXPECT_EQ(BatchSizeBandit::Parse(data).status().code(),
              absl::StatusCode::kDataLoss)
        << "input:\n"
        << data;
  }
}

// ---------------------------------------------------------------------------
// LargestBatchWithinSlo

struct SloCase {
  std::string name;
  std::vector<BatchLatencyPoint> observed;
  std::vector<int32_t> candidates;
  double slo_ms;
  int32_t want;
};

TEST(LargestBatchWithinSloTest, Table) {
  const std::vector<int32_t> pow2 = {1, 2, 4, 8, 16, 32, 64};
  // Latency 10 ms at batch 1, 16 ms at 4, 40 ms at 16.
  const std::vector<BatchLatencyPoint> curve = {{1, 10}, {4, 16}, {16, 40}};
  const std::vector<SloCase> cases = {
      // 8 interpolates to 16 + (4/12) x 24 = 24 ms; 16 is 40 ms.
      {"interpolated", curve, pow2, 30, 8},
      {"exactly at an observed point", curve, pow2, 40, 16},
      {"just below an interpolated value", curve, pow2, 23.9, 4},
      // 32: max(40 x 2, 40 + 2 x 16) = 80 ms; 64: max(160, 136) = 160 ms.
      {"extrapolated proportionally", curve, pow2, 100, 32},
      {"extrapolated beyond every candidate", curve, pow2, 1000, 64},
      // Last segment steeper than proportional: 32 -> 60 + 5 x 16 = 140 ms,
      // not 60 x 2 = 120 ms.
      {"extrapolated by a steep last slope",
       {{8, 20}, {16, 60}},
       pow2,
       130,
       16},
      {"none within the SLO", curve, pow2, 5, 1},
      // Below the smallest observed batch: its latency (16 ms) is assumed.
      {"below the first point", {{4, 16}, {8, 20}}, pow2, 16, 4},
      {"below the first point, too slow", {{4, 16}, {8, 20}}, pow2, 15, 1},
      {"nothing observed", {}, pow2, 1000, 1},
      // A dip at 8 (15 ms < 20 ms at 4) must not make 8 look safe.
      {"non-monotone measurements", {{4, 20}, {8, 15}, {16, 50}}, pow2, 18, 1},
      {"repeated batch size keeps the worst",
       {{1, 10}, {8, 20}, {8, 35}},
       pow2,
       30,
       4},
      {"invalid points are ignored",
       {{0, 1}, {-4, 1}, {8, kNaN}, {8, -1}, {16, kInf}, {1, 10}, {4, 16}},
       pow2,
       20,
       4},
      {"unsorted inputs", {{16, 40}, {1, 10}, {4, 16}}, {64, 8, 1, 32}, 30, 8},
      {"candidates between observed points",
       curve,
       {3, 6, 10, 24},
       // 10: 16 + 6/12 x 24 = 28 ms.
       28,
       10},
      {"NaN SLO", curve, pow2, kNaN, 1},
      {"zero SLO", curve, pow2, 0, 1},
      {"no candidates", curve, {}, 100, 0},
  };
  for (const SloCase& c : cases) {
    EXPECT_EQ(LargestBatchWithinSlo(c.observed, c.candidates, c.slo_ms), c.want)
        << c.name;
  }
}

}  // namespace
}  // namespace joule
