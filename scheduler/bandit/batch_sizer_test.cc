#include "scheduler/bandit/batch_sizer.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

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
                     double expected_samples = 0, double samples = 1000) {
  BatchOutcome outcome;
  outcome.job_id = job_id;
  outcome.job_class = "resnet";
  outcome.batch_size = batch;
  outcome.joules = joules;
  outcome.samples = samples;
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

// The simulated workload split in two: the samples each batch size needs to
// reach the target per declared sample (GPU-independent), and the joules a
// sample costs at each batch size on a GPU model ("slow" takes 1.5x "fast").
double WorkRatio(int32_t batch) {
  static const std::map<int32_t, double> kRatio = {
      {32, 1.4}, {64, 1.0}, {128, 1.3}, {256, 2.2}, {512, 4.0}};
  return kRatio.at(batch);
}
double JoulesPerSample(const std::string& gpu, int32_t batch) {
  static const std::map<int32_t, double> kFast = {
      {32, 1.0}, {64, 0.8}, {128, 0.7}, {256, 0.6}, {512, 0.55}};
  return kFast.at(batch) * (gpu == "slow" ? 1.5 : 1.0);
}
SampleCosts CostsOn(const std::string& gpu) {
  return [gpu](const std::vector<int32_t>& batches) {
    std::vector<double> costs;
    for (int32_t batch : batches) costs.push_back(JoulesPerSample(gpu, batch));
    return costs;
  };
}
SampleCosts Flat(double joules) {
  return [joules](const std::vector<int32_t>& batches) {
    return std::vector<double>(batches.size(), joules);
  };
}

const auto kNoneRunning = [](const std::string&) { return false; };

TEST(BatchSizerTest, JobsOfEverySizeOnEveryGpuTeachOneBandit) {
  // Jobs from 1e3 to 1e7 samples on two GPU models: the raw energy to target
  // varies 10,000x with the size, 1.5x with the GPU and 2.75x with the
  // batch. The sizer learns the work ratio, which depends on neither, and
  // weighs it with the joules per sample on the job's GPUs: 64 is the
  // cheapest on both (ratio x joules: 1.4, 0.8, 0.91, 1.32, 2.2 on "fast").
  BatchSizer sizer({/*prune_factor=*/2, /*prune_min_observations=*/1});
  std::mt19937_64 gen(7);
  std::lognormal_distribution<double> size(std::log(1e5), 2.0);
  std::lognormal_distribution<double> noise(0, 0.1);
  std::map<int32_t, int> late_choices;
  for (int job = 0; job < 300; ++job) {
    const std::string id = absl::StrCat("job-", job);
    const std::string gpu = job % 2 == 0 ? "fast" : "slow";
    const double declared = size(gen);
    BatchRequest request = Request(id, declared);
    request.sample_costs = CostsOn(gpu);
    request.gpu_model = gpu;
    BatchChoice choice = sizer.Choose(request, absl::BitGenRef(gen), kNoneRunning);
    const double samples = declared * WorkRatio(choice.batch_size) * noise(gen);
    const double joules = samples * JoulesPerSample(gpu, choice.batch_size);
    ASSERT_TRUE(sizer.Finished(Outcome(id, choice.batch_size, joules, declared, samples)).ok());
    if (job >= 200) ++late_choices[choice.batch_size];
    if (job == 299) EXPECT_THAT(choice.reason, HasSubstr("x joules per sample on slow (32: 1.5 J"));
  }
  EXPECT_GE(late_choices[64], 90) << "late choices of 64: " << late_choices[64];
  // 512 (2.75x the best) was pruned after one run.
  EXPECT_EQ(late_choices[512], 0);
  const BatchSizeBandit* bandit = sizer.Bandit("resnet");
  ASSERT_NE(bandit, nullptr);
  for (const BatchSizeArmSummary& arm : bandit->Summaries()) {
    if (arm.batch_size == 512) EXPECT_EQ(arm.observations, 1);
    // What was learned is the work ratio itself.
    if (arm.batch_size == 64) EXPECT_NEAR(arm.mean, 1.0, 0.05);
  }
}

TEST(BatchSizerTest, TheGpusAtHandDecideBetweenEqualWorkRatios) {
  // Every batch size needs the same samples; on GPUs whose samples get
  // cheaper with the batch the largest wins, on GPUs where they get dearer
  // the smallest.
  BatchSizer sizer;
  std::mt19937_64 gen(5);
  for (int job = 0; job < 5; ++job) {
    const std::string id = absl::StrCat("small-", job);
    BatchChoice choice = sizer.Choose(Request(id, 1e3), absl::BitGenRef(gen), kNoneRunning);
    ASSERT_TRUE(sizer.Finished(Outcome(id, choice.batch_size, 1e3, 1e3, 1e3)).ok());
  }
  BatchRequest cheaper_with_batch = Request("large-1", 1e6);
  cheaper_with_batch.sample_costs = CostsOn("fast");
  EXPECT_EQ(sizer.Choose(cheaper_with_batch, absl::BitGenRef(gen), kNoneRunning).batch_size, 512);
  BatchRequest dearer_with_batch = Request("large-2", 1e6);
  dearer_with_batch.sample_costs = [](const std::vector<int32_t>& batches) {
    std::vector<double> costs;
    for (int32_t batch : batches) costs.push_back(batch / 32.0);
    return costs;
  };
  EXPECT_EQ(sizer.Choose(dearer_with_batch, absl::BitGenRef(gen), kNoneRunning).batch_size, 32);
  // Unusable costs (wrong count, not positive) are ignored, not trusted.
  BatchRequest bad = Request("large-3", 1e6);
  bad.sample_costs = [](const std::vector<int32_t>&) { return std::vector<double>{1, 2}; };
  EXPECT_THAT(sizer.Choose(bad, absl::BitGenRef(gen), kNoneRunning).reason,
              Not(HasSubstr("joules per sample on")));
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

TEST(BatchSizerTest, AttemptsRunningAtARestartCountInFlightEvenInANewClass) {
  // After a restart the store held nothing of the class (none of its runs
  // had finished): the attempt still running at the default is re-added,
  // and the next job tries another batch size.
  BatchSizer sizer;
  sizer.Started(Request("a"), 128);
  ASSERT_NE(sizer.Bandit("resnet"), nullptr);
  std::mt19937_64 gen(1);
  auto only_a = [](const std::string& id) { return id == "a"; };
  EXPECT_EQ(sizer.Choose(Request("b"), absl::BitGenRef(gen), only_a).batch_size, 64);
}

TEST(BatchSizerTest, StateRoundTripsAndEarlierStateIsRelearned) {
  BatchSizer sizer;
  std::mt19937_64 gen(3);
  sizer.Choose(Request("a", 5e4), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_TRUE(sizer.Finished(Outcome("a", 128, 6e4, 5e4, 6e4)).ok());
  const std::string text = sizer.SerializeClass("resnet");
  ASSERT_THAT(text, HasSubstr("unit work_ratio"));

  BatchSizer restored;
  ASSERT_TRUE(restored.ParseClass("resnet", text).ok());
  EXPECT_EQ(restored.SerializeClass("resnet"), text);
  // The typical size came back: a job of 10x that size does not explore.
  EXPECT_THAT(restored.Choose(Request("b", 5e5), absl::BitGenRef(gen), kNoneRunning).reason,
              HasSubstr("only exploits"));
  // So did the unit: raw joules to target are still refused.
  EXPECT_EQ(restored.Finished(Outcome("c", 128, 5e3)).code(), absl::StatusCode::kInvalidArgument);
  const std::string now = restored.SerializeClass("resnet");

  // State of earlier versions mixed units that cannot be split: refused with
  // FAILED_PRECONDITION (the class relearns), the class unchanged.
  const std::string bandit_only = sizer.Bandit("resnet")->Serialize();
  EXPECT_EQ(restored.ParseClass("resnet", bandit_only).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(restored.ParseClass("resnet", "joule.BatchSizer v1\nsizes 1 2\n" + bandit_only)
                .code(),
            absl::StatusCode::kFailedPrecondition);
  // Corruption is refused as such and changes nothing.
  EXPECT_EQ(restored.ParseClass("resnet", "joule.BatchSizer v2\nsizes x 1\nunit work_ratio\n" +
                                              bandit_only)
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(restored.ParseClass("resnet", "joule.BatchSizer v2\nsizes 1 1\nunit watts\n" +
                                              bandit_only)
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(restored.ParseClass("resnet", text.substr(0, text.size() - 5)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(restored.ParseClass("resnet", "garbage").code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(restored.SerializeClass("resnet"), now);
}

TEST(BatchSizerTest, ARunFarAboveTheBestCostIsMoved) {
  BatchSizer sizer;
  std::mt19937_64 gen(1);
  // Work ratios: 128 measured at 1.2, 64 at 1.0; a sample costs 1 J at
  // every batch size.
  sizer.Choose(Request("a", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_TRUE(sizer.Finished(Outcome("a", 128, 1.2e3, 1e3, 1.2e3)).ok());
  BatchChoice b = sizer.Choose(Request("b", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_EQ(b.batch_size, 64);
  ASSERT_TRUE(sizer.Finished(Outcome("b", 64, 1.0e3, 1e3, 1.0e3)).ok());
  // A job running at 256 projects 1.9 J per declared sample: under 2x the
  // best, it stays.
  BatchChoice c = sizer.Choose(Request("c", 1e3), absl::BitGenRef(gen), kNoneRunning);
  ASSERT_EQ(c.batch_size, 256);
  EXPECT_EQ(sizer.CheckRunning("resnet", "c", 256, 1.9, 1.0, Flat(1), 2, 32, 512), 0);
  // Without sample costs nothing can be compared: it stays.
  EXPECT_EQ(sizer.CheckRunning("resnet", "c", 256, 3.0, 1.0, nullptr, 2, 32, 512), 0);
  // At 3.0 it is moved to 64, and the projected ratio counts for 256.
  EXPECT_EQ(sizer.CheckRunning("resnet", "c", 256, 3.0, 1.0, Flat(1), 2, 32, 512), 64);
  for (const BatchSizeArmSummary& arm : sizer.Bandit("resnet")->Summaries()) {
    if (arm.batch_size == 256) {
      EXPECT_EQ(arm.observations, 1);
      EXPECT_DOUBLE_EQ(arm.mean, 3.0);
    }
  }
  // The best batch size outside the job's range is no candidate: 128 is
  // the best in [128, 512].
  EXPECT_EQ(sizer.CheckRunning("resnet", "f", 512, 3.0, 1.0, Flat(1), 2, 128, 512), 128);
  EXPECT_EQ(sizer.CheckRunning("resnet", "g", 512, 3.0, 1.0, Flat(1), 2, 256, 512), 0);
  // A job already at the best batch size is never moved.
  EXPECT_EQ(sizer.CheckRunning("resnet", "d", 64, 100, 1.0, Flat(1), 2, 32, 512), 0);
  EXPECT_EQ(sizer.CheckRunning("unknown", "e", 64, 100, 1.0, Flat(1), 2, 32, 512), 0);
  // On GPUs where a sample at 64 costs 2 J and at 128 1 J, 128 is the best
  // (1.2 x 1 against 1.0 x 2): a run at 64 costing 3 J per sample (3.0 per
  // declared sample) is moved there; one costing 2 J (2.0) stays.
  SampleCosts cheaper_at_128 = [](const std::vector<int32_t>& batches) {
    std::vector<double> costs;
    for (int32_t batch : batches) costs.push_back(batch == 64 ? 2.0 : 1.0);
    return costs;
  };
  EXPECT_EQ(sizer.CheckRunning("resnet", "h", 64, 1.0, 2.0, cheaper_at_128, 2, 32, 512), 0);
  EXPECT_EQ(sizer.CheckRunning("resnet", "h", 64, 1.0, 3.0, cheaper_at_128, 2, 32, 512), 128);
}

TEST(BatchSizerTest, NothingToLearnOrAnotherUnitIsAnError) {
  BatchSizer sizer;
  EXPECT_EQ(sizer.Finished(Outcome("x", 128, 100)).code(), absl::StatusCode::kNotFound);
  std::mt19937_64 gen(3);
  sizer.Choose(Request("x"), absl::BitGenRef(gen), kNoneRunning);
  EXPECT_EQ(sizer.Finished(Outcome("x", 128, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sizer.Finished(Outcome("x", 100, 5)).code(), absl::StatusCode::kInvalidArgument);
  // A declared job that did not reach its target has no work ratio.
  BatchOutcome unfinished = Outcome("y", 128, 5e3, 1e3);
  unfinished.target_reached = false;
  EXPECT_EQ(sizer.Finished(unfinished).code(), absl::StatusCode::kInvalidArgument);
  // The first lesson fixes the unit: work ratios, then raw joules to target
  // are refused (and the other way round in another class).
  EXPECT_TRUE(sizer.Finished(Outcome("y", 128, 5e3, 1e3)).ok());
  absl::Status mixed = sizer.Finished(Outcome("z", 128, 5e3));
  EXPECT_EQ(mixed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mixed.message(), HasSubstr("learns work_ratio"));
  BatchRequest other = Request("u");
  other.job_class = "bert";
  sizer.Choose(other, absl::BitGenRef(gen), kNoneRunning);
  BatchOutcome raw = Outcome("u", 128, 5e3);
  raw.job_class = "bert";
  EXPECT_TRUE(sizer.Finished(raw).ok());
  BatchOutcome declared = Outcome("v", 128, 5e3, 1e3);
  declared.job_class = "bert";
  EXPECT_EQ(sizer.Finished(declared).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace joule
