#include "sim/trace/workload_mapping.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace joule::sim {
namespace {

std::vector<TraceJob> MakeJobs(int n) {
  std::vector<TraceJob> jobs;
  for (int i = 0; i < n; ++i) {
    TraceJob job;
    job.id = i;
    job.arrival_s = i;
    job.duration_s = 60;
    job.gpus = 1 + i % 8;
    job.cluster = "c";
    jobs.push_back(job);
  }
  return jobs;
}

TEST(WorkloadMappingTest, SameSeedSameMapping) {
  const std::vector<TraceJob> jobs = MakeJobs(1000);
  const std::vector<MappedJob> a = MapWorkloads(jobs, 7);
  const std::vector<MappedJob> b = MapWorkloads(jobs, 7);
  ASSERT_EQ(a.size(), jobs.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].job.id, jobs[i].id);
    EXPECT_EQ(a[i].workload, b[i].workload);
  }
}

TEST(WorkloadMappingTest, DifferentSeedDiffers) {
  const std::vector<TraceJob> jobs = MakeJobs(1000);
  const std::vector<MappedJob> a = MapWorkloads(jobs, 1);
  const std::vector<MappedJob> b = MapWorkloads(jobs, 2);
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].workload != b[i].workload) ++differing;
  }
  // Independent uniform choices differ with probability 5/6.
  EXPECT_GT(differing, 700);
}

TEST(WorkloadMappingTest, DependsOnlyOnSeedAndJobId) {
  const std::vector<TraceJob> jobs = MakeJobs(100);
  const std::vector<TraceJob> subset(jobs.begin() + 50, jobs.end());
  const std::vector<MappedJob> all = MapWorkloads(jobs, 3);
  const std::vector<MappedJob> part = MapWorkloads(subset, 3);
  for (size_t i = 0; i < part.size(); ++i) {
    EXPECT_EQ(part[i].workload, all[i + 50].workload);
  }
}

TEST(WorkloadMappingTest, AllSixWorkloadsAppearRoughlyUniformly) {
  const std::vector<MappedJob> mapped = MapWorkloads(MakeJobs(1000), 42);
  std::map<std::string, int> counts;
  for (const MappedJob& m : mapped) {
    ++counts[m.workload];
    EXPECT_EQ(m.default_batch_size, ZeusDefaultBatchSize(m.workload));
    EXPECT_GT(m.default_batch_size, 0);
  }
  ASSERT_EQ(counts.size(), 6u);
  for (absl::string_view w : kWorkloads) {
    // Expected 166.7 each; +-70 is far outside binomial noise.
    EXPECT_GT(counts[std::string(w)], 96) << w;
    EXPECT_LT(counts[std::string(w)], 237) << w;
  }
}

TEST(WorkloadMappingTest, ZeusDefaults) {
  EXPECT_EQ(ZeusDefaultBatchSize("cifar100/shufflenetv2"), 1024);
  EXPECT_EQ(ZeusDefaultBatchSize("imagenet/resnet50"), 256);
  EXPECT_EQ(ZeusDefaultBatchSize("librispeech/deepspeech2"), 192);
  EXPECT_EQ(ZeusDefaultBatchSize("movielens-1m/ncf"), 1024);
  EXPECT_EQ(ZeusDefaultBatchSize("sentiment140/bert_base_uncased"), 128);
  EXPECT_EQ(ZeusDefaultBatchSize("squad/bert_base_uncased"), 32);
  EXPECT_EQ(ZeusDefaultBatchSize("mnist/lenet"), 0);
}

}  // namespace
}  // namespace joule::sim
