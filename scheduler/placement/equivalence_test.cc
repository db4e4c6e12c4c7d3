// On randomized clusters (seeded), the pipeline with sampling off places
// every job of a queue on the same nodes and GPUs as the naive full scan.

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "scheduler/placement/full_scan.h"
#include "scheduler/placement/plugin_registry.h"
#include "scheduler/placement/pipeline.h"
#include "scheduler/placement/profile.h"
#include "scheduler/placement/test_nodes.h"

namespace joule {
namespace {

using testing_nodes::kNow;

const std::vector<std::string> kModels = {"A40", "V100", "H100"};

ClusterSnapshot RandomCluster(std::mt19937& rng, int nodes) {
  ClusterSnapshot snapshot;
  snapshot.now = kNow;
  for (int n = 0; n < nodes; ++n) {
    NodeView node;
    node.name = absl::StrFormat("node-%04d", n);
    node.ready = rng() % 20 != 0;
    node.asleep = node.ready && rng() % 10 == 0;
    node.last_telemetry = kNow - absl::Seconds(rng() % 25 == 0 ? 120 : rng() % 20);
    node.total_cpus = 8 + 8 * (rng() % 4);
    node.free_cpus = node.total_cpus - (rng() % 3 == 0 ? rng() % static_cast<int>(node.total_cpus) : 0);
    node.total_memory_bytes = int64_t{32 << (rng() % 3)} << 30;
    node.free_memory_bytes = node.total_memory_bytes;
    node.static_power_w = 50 + rng() % 150;
    const int shape = rng() % 10;
    const int gpus = shape == 0 ? 0 : 1 << (rng() % 4);
    const std::string model = kModels[rng() % kModels.size()];
    const std::string second = kModels[rng() % kModels.size()];
    for (int g = 0; g < gpus; ++g) {
      GpuView gpu;
      gpu.index = g;
      gpu.model = shape == 1 && g >= gpus / 2 ? second : model;
      gpu.power_limit_default_w = gpu.model == "A40" ? 300 : gpu.model == "V100" ? 250 : 700;
      gpu.temp_c = 30 + rng() % 50;
      gpu.throttle_temp_c = 85;
      gpu.hot = gpu.temp_c >= 80;
      gpu.free = rng() % 3 != 0;
      if (!gpu.free) node.running_tasks = 1;
      node.gpus.push_back(gpu);
    }
    snapshot.nodes.push_back(std::move(node));
  }
  snapshot.Index();
  return snapshot;
}

PlacementRequest RandomRequest(std::mt19937& rng, int job) {
  PlacementRequest request;
  request.job_id = absl::StrCat("job-", job);
  const int kind = rng() % 10;
  request.gpus = kind == 0 ? 0 : 1 << (rng() % 4);
  request.replicas = kind == 9 ? 1 + rng() % 16 : 1 + (rng() % 5 == 0 ? rng() % 3 : 0);
  request.cpus = 1 + rng() % 4;
  request.memory_bytes = int64_t{1} << (28 + rng() % 6);
  if (rng() % 5 == 0) request.gpu_model = kModels[rng() % kModels.size()];
  if (request.gpus > 0 && rng() % 3 == 0) {
    for (const std::string& model : kModels) {
      request.learned_cost[model] = {0.5 + (rng() % 100) / 50.0, 10.0 + rng() % 200};
    }
    if (rng() % 4 == 0) request.learned_cost.erase(kModels[rng() % kModels.size()]);
  }
  if (request.gpus > 0 && rng() % 3 == 0) {
    request.routed_models.insert(kModels[rng() % kModels.size()]);
    if (rng() % 2 == 0) request.routed_models.insert(kModels[rng() % kModels.size()]);
    request.routing_note = "routed";
  }
  return request;
}

void ExpectSamePlacements(const PlacementProfile& profile, int seed, int nodes, int jobs) {
  absl::StatusOr<std::unique_ptr<PlacementPipeline>> pipeline =
      PlacementPipeline::FromProfile(profile, PluginArgs{absl::Seconds(30)});
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  std::mt19937 rng(seed);
  ClusterSnapshot cluster = RandomCluster(rng, nodes);
  int placed = 0;
  for (int job = 0; job < jobs; ++job) {
    const PlacementRequest request = RandomRequest(rng, job);
    const std::vector<ReplicaPlacement> expected = NaiveFullScan(**pipeline, request, cluster);
    const PlacementResult result = (*pipeline)->Place(request, &cluster);
    ASSERT_EQ(result.kind == PlacementResult::Kind::kPlaced, !expected.empty())
        << "seed " << seed << " job " << job << ": " << result.reason;
    ASSERT_EQ(result.replicas.size(), expected.size()) << "seed " << seed << " job " << job;
    for (size_t r = 0; r < expected.size(); ++r) {
      std::string top;
      for (const ScoredCandidate& c : result.summary.top) {
        absl::StrAppend(&top, " ", c.node, "=", c.total_score);
        for (const ScoreEntry& e : c.scores) absl::StrAppend(&top, "/", e.plugin, ":", e.score);
      }
      EXPECT_EQ(result.replicas[r].node, expected[r].node)
          << "seed " << seed << " job " << job << " replica " << r << " top:" << top
          << " feasible " << result.summary.nodes_feasible;
      EXPECT_EQ(result.replicas[r].gpu_indices, expected[r].gpu_indices);
    }
    placed += !expected.empty();
  }
  // The queue both fits and overflows the cluster.
  EXPECT_GT(placed, jobs / 10) << "seed " << seed;
  EXPECT_LT(placed, jobs) << "seed " << seed;
}

TEST(EquivalenceTest, EnergyProfileWithoutSamplingMatchesTheFullScan) {
  PlacementProfile profile = EnergyProfile();
  profile.percentage_of_nodes_to_score = 100;
  for (int seed = 1; seed <= 20; ++seed) ExpectSamePlacements(profile, seed, 150, 400);
}

TEST(EquivalenceTest, FirstFitMatchesTheFullScan) {
  for (int seed = 1; seed <= 10; ++seed) ExpectSamePlacements(FirstFitProfile(), seed, 150, 400);
}

TEST(EquivalenceTest, EachScorerAloneMatchesTheFullScan) {
  for (const std::string& scorer : ScorePluginNames()) {
    PlacementProfile profile = EnergyProfile();
    profile.percentage_of_nodes_to_score = 100;
    profile.scorers = {{scorer, 1}};
    for (int seed = 1; seed <= 5; ++seed) ExpectSamePlacements(profile, seed, 100, 300);
  }
}

}  // namespace
}  // namespace joule
