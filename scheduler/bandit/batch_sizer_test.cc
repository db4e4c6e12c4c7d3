#include "scheduler/bandit/batch_sizer.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

BatchRequest Request(const std::string& job_id, double expected_samples = 0) {
  BatchRequest request;
  request.job_id = job_id;
  request.job_class = "resnet";
  request.min = 32;
  request.default_size = 128;
  request.max = 512;
  request.expected_samples = expected_samples;
  return request;
}

BatchOutcome Outcome(const std::string& job_id, int32_t batch, double joules,
                     double expected_samples = 0) {
  BatchOutcome outcome;
  outcome.job_id = job_id;
  outcome.job_class = "resnet";
  outcome.batch_size = batch;
  outcome.joules = joules;
  outcome.samples = 1000;
  outcome.target_reached = true;
  outcome.expected_samples = expected_samples;
  return outcome;
}

// Energy per sample of the simulated workload at each batch size: 64 is the
// cheapest, 512 costs 3x.
double CostPerSample(int32_t batch) {
  static const std::map<int32_t, double> kCost = {
      {32, 1.6}, {64, 1.0}, {128, 1.2}, {256, 1.8}, {512, 3.0}};
  return kCost.at(batch);
}

const auto kNoneRunning = [](const std::string&) { return false; };

TEST(BatchSizerTest, JobsOfEverySizeTeachOneBandit) {
  // Jobs from 1e3 to 1e7 samples: the raw energy to target varies 10,000x
  // with the size, 3x with the batch. Per declared sample the sizer finds
  // the cheapest batch.
  BatchSizer sizer({/*prune_factor=*/2, /*prune_min_observations=*/1});
  std::mt19937_64 gen(7);
  std::lognormal_distribution<double> size(std::log(1e5), 2.0);
  std::lognormal_distribution<double> noise(0, 0.1);
  std::map<int32_t, int> late_choices;
  for (int job = 0; job < 300; ++job) {
    const std::string id = absl::StrCat("job-", job);
    const double samples = size(gen);
    BatchChoice choice = sizer.Choose(Request(id, samples), absl::BitGenRef(gen), kNoneRunning);
    const double joules = samples * CostPerSample(choice.batch_size) * noise(gen);
    ASSERT_TRUE(sizer.Finished(Outcome(id, choice.batch_size, joules, samples)).ok());
    if (job >= 200) ++late_choices[choice.batch_size];
  }
  EXPECT_GE(late_choices[64], 90) << "late choices of 64: " << late_choices[64];
  // 512 (3x the best) was pruned after one run.
  EXPECT_EQ(late_choices[512], 0);
  const BatchSizeBandit* bandit = sizer.Bandit("resnet");
  ASSERT_NE(bandit, nullptr);
  for (const BatchSizeArmSummary& arm : bandit->Summaries()) {
    if (arm.batch_size == 512) {
      EXPECT_EQ(arm.observations, 1);
      EXPECT_TRUE(arm.pruned);
    }
  }
}

TEST(BatchSizerTest, RawEnergyMixesSizesAndLearnsTheWrongBatch) {
  // The same jobs without declared sizes: the bandit compares raw energy to
  // target, so it learns whichever batch happened to get small jobs. This is
  // what normalization fixes; the test shows the normalized run above is
  // not a lucky one.
  BatchSizer sizer;
  std::mt19937_64 gen(7);
  std::lognormal_distribution<double> size(std::log(1e5), 2.0);
  int right = 0;
  for (int job = 0; job < 300; ++job) {
    const std::string id = absl::StrCat("job-", job);
    const double samples = size(gen);
    BatchChoice choice = sizer.Choose(Request(id), absl::BitGenRef(gen), kNoneRunning);
    ASSERT_TRUE(
        sizer.Finished(Outcome(id, choice.batch_size, samples * CostPerSample(choice.batch_size)))
            .ok());
    if (job >= 200 && choice.batch_size == 64) ++right;
  }
  EXPECT_LT(right, 90);
}

TEST(BatchSizerTest, LargeJobsDoNotExplore) {
  BatchSizer sizer;
  std::mt19937_64 gen(1);
  // A small job sets the class's typical size and tries the default.
  BatchChoice first = sizer.Choose(Request("small-1", 1e3), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_EQ(first.batch_size, 128);
  ASSERT_TRUE(sizer.Finished(Outcome("small-1", 128, 1.2e3, 1e3)).ok());
  // A job 1000x larger than the class's typical size gets the best measured
  // batch (the only one), never an untried one.
  BatchChoice large = sizer.Choose(Request("large", 1e6), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_EQ(large.batch_size, 128);
  EXPECT_THAT(large.reason, HasSubstr("only exploits what was measured"));
  // The next small job tries an untried batch size.
  BatchChoice small = sizer.Choose(Request("small-2", 1e3), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_NE(small.batch_size, 128);
  EXPECT_THAT(small.reason, HasSubstr("may explore"));
}

TEST(BatchSizerTest, AnUntriedBatchSizeInFlightIsNotHandedOutAgain) {
  BatchSizer sizer;
  std::mt19937_64 gen(1);
  std::set<std::string> running;
  auto is_running = [&running](const std::string& id) { return running.count(id) > 0; };
  // Five jobs arrive before any finishes: each gets a different untried
  // batch size (the default first, then by distance from it).
  std::set<int32_t> tried;
  for (int job = 0; job < 5; ++job) {
    const std::string id = absl::StrCat("job-", job);
    BatchChoice choice = sizer.Choose(Request(id), absl::BitGenRef(gen), is_running);
    running.insert(id);
    tried.insert(choice.batch_size);
  }
  EXPECT_EQ(tried, (std::set<int32_t>{32, 64, 128, 256, 512}));
  // A sixth with every arm in flight and none measured: the default.
  EXPECT_EQ(sizer.Choose(Request("job-5"), absl::BitGenRef(gen), is_running).batch_size, 128);
  // Jobs that ended without teaching (cancelled) free their arms.
  running.clear();
  EXPECT_EQ(sizer.Choose(Request("job-6"), absl::BitGenRef(gen), is_running).batch_size, 128);
}

TEST(BatchSizerTest, StateRoundTripsAndOldBanditStateLoads) {
  BatchSizer sizer;
  std::mt19937_64 gen(3);
  sizer.Choose(Request("a", 5e4), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_TRUE(sizer.Finished(Outcome("a", 128, 6e4, 5e4)).ok());
  const std::string text = sizer.SerializeClass("resnet");
  ASSERT_FALSE(text.empty());

  BatchSizer restored;
  ASSERT_TRUE(restored.ParseClass("resnet", text).ok());
  EXPECT_EQ(restored.SerializeClass("resnet"), text);
  // The typical size came back: a job of 10x that size does not explore.
  EXPECT_THAT(restored.Choose(Request("b", 5e5), absl::BitGenRef(gen), kNoneRunning).reason,
              HasSubstr("only exploits"));

  // A bandit stored before the sizer existed loads with no size history.
  BatchSizer legacy;
  const std::string bandit_only = sizer.Bandit("resnet")->Serialize();
  ASSERT_TRUE(legacy.ParseClass("resnet", bandit_only).ok());
  EXPECT_EQ(legacy.Bandit("resnet")->Serialize(), bandit_only);

  // Corruption is refused and changes nothing.
  EXPECT_EQ(legacy.ParseClass("resnet", "joule.BatchSizer v1\nsizes x 1\n" + bandit_only).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(legacy.ParseClass("resnet", text.substr(0, text.size() - 5)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(legacy.Bandit("resnet")->Serialize(), bandit_only);
}

TEST(BatchSizerTest, ARunFarAboveTheBestCostIsMoved) {
  BatchSizer sizer;
  std::mt19937_64 gen(1);
  // 128 measured at 1.2 J per declared sample, 64 at 1.0.
  sizer.Choose(Request("a", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_TRUE(sizer.Finished(Outcome("a", 128, 1.2e3, 1e3)).ok());
  BatchChoice b = sizer.Choose(Request("b", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_EQ(b.batch_size, 64);
  ASSERT_TRUE(sizer.Finished(Outcome("b", 64, 1.0e3, 1e3)).ok());
  // A job running at 256 projects 1.9: under 2x the best, it stays.
  BatchChoice c = sizer.Choose(Request("c", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_EQ(c.batch_size, 256);
  EXPECT_EQ(sizer.CheckRunning("resnet", "c", 256, 1.9, 2, 32, 512), 0);
  // At 3.0 it is moved to 64, and the projection counts for 256.
  EXPECT_EQ(sizer.CheckRunning("resnet", "c", 256, 3.0, 2, 32, 512), 64);
  for (const BatchSizeArmSummary& arm : sizer.Bandit("resnet")->Summaries()) {
    if (arm.batch_size == 256) {
      EXPECT_EQ(arm.observations, 1);
      EXPECT_DOUBLE_EQ(arm.mean, 3.0);
    }
  }
  // The best batch size outside the job's range is no candidate: 128 is
  // the best in [128, 512].
  EXPECT_EQ(sizer.CheckRunning("resnet", "f", 512, 3.0, 2, 128, 512), 128);
  EXPECT_EQ(sizer.CheckRunning("resnet", "g", 512, 3.0, 2, 256, 512), 0);
  // A job already at the best batch size is never moved.
  EXPECT_EQ(sizer.CheckRunning("resnet", "d", 64, 100, 2, 32, 512), 0);
  EXPECT_EQ(sizer.CheckRunning("unknown", "e", 64, 100, 2, 32, 512), 0);
}

TEST(BatchSizerTest, NothingToLearnIsAnError) {
  BatchSizer sizer;
  EXPECT_EQ(sizer.Finished(Outcome("x", 128, 100)).code(), absl::StatusCode::kNotFound);
  std::mt19937_64 gen(3);
  sizer.Choose(Request("x"), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_EQ(sizer.Finished(Outcome("x", 128, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sizer.Finished(Outcome("x", 100, 5)).code(), absl::StatusCode::kInvalidArgument);
  // Once the class has seen a declared size, raw joules to target would mix
  // units: refused.
  sizer.Choose(Request("y", 1e3), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_EQ(sizer.Finished(Outcome("z", 128, 5e3)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(sizer.Finished(Outcome("y", 128, 5e3, 1e3)).ok());
}

}  // namespace
}  // namespace joule
