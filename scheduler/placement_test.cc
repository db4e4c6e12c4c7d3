#include "scheduler/placement.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// Fluent fixture builder: NodeBuilder("a").Gpus(4, "V100").Build().
class NodeBuilder {
 public:
  explicit NodeBuilder(std::string name) {
    node_.name = std::move(name);
    node_.ready = true;
    node_.last_telemetry = kNow;
    node_.total_cpus = node_.free_cpus = 16;
    node_.total_memory_bytes = node_.free_memory_bytes = int64_t{64} << 30;
    node_.static_power_w = 100;
  }
  NodeBuilder& Gpus(int count, const std::string& model, double limit_w = 250) {
    for (int i = 0; i < count; ++i) {
      GpuView gpu;
      gpu.index = static_cast<int32_t>(node_.gpus.size());
      gpu.model = model;
      gpu.power_limit_default_w = limit_w;
      gpu.idle_power_w = 30;
      gpu.temp_c = 40;
      gpu.throttle_temp_c = 85;
      node_.gpus.push_back(gpu);
    }
    return *this;
  }
  NodeBuilder& Used(int32_t gpu_index) {
    node_.gpus[gpu_index].free = false;
    ++node_.running_tasks;
    return *this;
  }
  NodeBuilder& Asleep() {
    node_.asleep = true;
    return *this;
  }
  NodeBuilder& Busy() {
    ++node_.running_tasks;
    node_.free_cpus -= 1;
    return *this;
  }
  NodeBuilder& Cpus(double total, double free) {
    node_.total_cpus = total;
    node_.free_cpus = free;
    return *this;
  }
  NodeBuilder& Temp(int32_t gpu_index, double temp_c) {
    node_.gpus[gpu_index].temp_c = temp_c;
    return *this;
  }
  NodeBuilder& Hot(int32_t gpu_index) {
    node_.gpus[gpu_index].hot = true;
    return *this;
  }
  NodeBuilder& Down() {
    node_.ready = false;
    return *this;
  }
  NodeBuilder& LastTelemetry(absl::Time t) {
    node_.last_telemetry = t;
    return *this;
  }
  NodeView Build() const { return node_; }

 private:
  NodeView node_;
};

PlacementRequest Request(int32_t gpus, int32_t replicas = 1,
                         const std::string& model = "", double cpus = 1) {
  PlacementRequest request;
  request.job_id = "job-1";
  request.gpus = gpus;
  request.replicas = replicas;
  request.gpu_model = model;
  request.cpus = cpus;
  request.memory_bytes = 1 << 30;
  return request;
}

ClusterSnapshot Cluster(std::vector<NodeView> nodes) {
  ClusterSnapshot snapshot;
  snapshot.now = kNow;
  snapshot.nodes = std::move(nodes);
  return snapshot;
}

struct Case {
  std::string name;
  ClusterSnapshot cluster;
  PlacementRequest request;
  PlacementResult::Kind kind;
  // For kPlaced: node of each replica; otherwise a substring of the reason.
  std::vector<std::string> nodes;
  std::string reason;
};

class PlacementCaseTest : public ::testing::TestWithParam<Case> {};

TEST_P(PlacementCaseTest, Decides) {
  const Case& c = GetParam();
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  PlacementResult result = pipeline->Place(c.request, c.cluster);
  EXPECT_EQ(result.kind, c.kind) << result.reason;
  if (c.kind == PlacementResult::Kind::kPlaced) {
    std::vector<std::string> nodes;
    for (const ReplicaPlacement& replica : result.replicas) {
      nodes.push_back(replica.node);
      EXPECT_EQ(static_cast<int32_t>(replica.gpu_indices.size()), c.request.gpus);
    }
    EXPECT_EQ(nodes, c.nodes);
  } else {
    EXPECT_TRUE(result.replicas.empty());
    EXPECT_THAT(result.reason, HasSubstr(c.reason));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Pipeline, PlacementCaseTest,
    ::testing::Values(
        Case{"SingleGpuOnOnlyNode",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Build()}), Request(1),
             PlacementResult::Kind::kPlaced, {"a"}, ""},
        Case{"DownNodeSkipped",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Down().Build(),
                      NodeBuilder("b").Gpus(4, "V100").Build()}),
             Request(1), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"StaleTelemetrySkipped",
             Cluster({NodeBuilder("a").Gpus(4, "V100").LastTelemetry(kNow - absl::Minutes(5)).Build(),
                      NodeBuilder("b").Gpus(4, "V100").Build()}),
             Request(1), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"ModelConstraint",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Build(),
                      NodeBuilder("b").Gpus(2, "A40").Build()}),
             Request(1, 1, "A40"), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"ConsolidatesOntoBusyNode",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Build(),
                      NodeBuilder("b").Gpus(4, "V100").Used(0).Build()}),
             Request(1), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"CpuJobAvoidsGpuNode",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Used(0).Build(),
                      NodeBuilder("c").Busy().Build()}),
             Request(0), PlacementResult::Kind::kPlaced, {"c"}, ""},
        // Even when the CPU node is idle and the GPU node busy.
        Case{"CpuJobPrefersCpuNodeOverBusyGpuNode",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Used(0).Build(),
                      NodeBuilder("c").Build()}),
             Request(0), PlacementResult::Kind::kPlaced, {"c"}, ""},
        // Two idle GPU nodes: the one with the cheaper GPUs and static power
        // wins, whatever their size.
        Case{"IdleNodesCompareOnPower",
             Cluster({NodeBuilder("a").Gpus(2, "A40", 300).Build(),
                      NodeBuilder("b").Gpus(4, "V100", 250).Build()}),
             Request(1), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"CpuJobsConsolidate",
             Cluster({NodeBuilder("c1").Build(), NodeBuilder("c2").Busy().Build()}),
             Request(0), PlacementResult::Kind::kPlaced, {"c2"}, ""},
        Case{"PrefersLowerPowerGpus",
             Cluster({NodeBuilder("a").Gpus(2, "A40", 300).Build(),
                      NodeBuilder("b").Gpus(2, "V100", 250).Build()}),
             Request(2), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"GangAcrossNodes",
             Cluster({NodeBuilder("a").Gpus(2, "V100").Build(),
                      NodeBuilder("b").Gpus(2, "V100").Build()}),
             Request(2, 2), PlacementResult::Kind::kPlaced, {"a", "b"}, ""},
        Case{"GangAllOrNothing",
             Cluster({NodeBuilder("a").Gpus(2, "V100").Build(),
                      NodeBuilder("b").Gpus(2, "V100").Used(0).Build()}),
             Request(2, 2), PlacementResult::Kind::kRetryLater, {},
             "replica 2 of 2"},
        Case{"TooManyGpusIsInfeasible",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Build()}), Request(8),
             PlacementResult::Kind::kInfeasible, {},
             "largest: a with 4 GPUs"},
        Case{"UnknownModelIsInfeasible",
             Cluster({NodeBuilder("a").Gpus(4, "V100").Build()}),
             Request(1, 1, "H100"), PlacementResult::Kind::kInfeasible, {},
             "H100 GPUs"},
        Case{"NoNodesIsInfeasible", Cluster({}), Request(1),
             PlacementResult::Kind::kInfeasible, {}, "no nodes are registered"},
        Case{"HotGpusTakeNoNewWork",
             Cluster({NodeBuilder("a").Gpus(2, "V100").Hot(0).Hot(1).Build(),
                      NodeBuilder("b").Gpus(1, "V100").Build()}),
             Request(1), PlacementResult::Kind::kPlaced, {"b"}, ""},
        Case{"OnlyHotGpusLeft",
             Cluster({NodeBuilder("a").Gpus(2, "V100").Hot(0).Hot(1).Build()}),
             Request(1), PlacementResult::Kind::kRetryLater, {}, "2 more too hot"},
        Case{"NotEnoughCpusNow",
             Cluster({NodeBuilder("c").Cpus(4, 0.5).Build()}), Request(0, 1, "", 2),
             PlacementResult::Kind::kRetryLater, {}, "FreeResources"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(PlacementTest, PicksCoolestGpus) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster(
      {NodeBuilder("a").Gpus(4, "V100").Temp(0, 80).Temp(1, 45).Temp(2, 35).Temp(3, 70).Build()});
  PlacementResult result = pipeline->Place(Request(2), cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_THAT(result.replicas[0].gpu_indices, ElementsAre(1, 2));
}

TEST(PlacementTest, KeepsPerPluginBreakdown) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(1, "V100").Build(),
                                     NodeBuilder("b").Gpus(1, "V100").Down().Build()});
  PlacementResult result = pipeline->Place(Request(1), cluster);
  ASSERT_EQ(result.verdicts.size(), 2u);
  EXPECT_EQ(result.verdicts[0].node, "a");
  EXPECT_EQ(result.verdicts[0].scores.size(), 5u);
  EXPECT_GT(result.verdicts[0].total_score, 0);
  ASSERT_EQ(result.verdicts[1].rejected_by.size(), 1u);
  EXPECT_EQ(result.verdicts[1].rejected_by[0].plugin, "NodeReady");
}

TEST(PlacementTest, ReserveMarksResourcesUsed) {
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(2, "V100").Build()});
  PlacementPipeline::Reserve(Request(1), {"a", {1}}, &cluster);
  EXPECT_TRUE(cluster.nodes[0].gpus[0].free);
  EXPECT_FALSE(cluster.nodes[0].gpus[1].free);
  EXPECT_EQ(cluster.nodes[0].free_cpus, 15);
  EXPECT_EQ(cluster.nodes[0].running_tasks, 1);
}

// First fit: no scorers, the first feasible node in name order, even where
// the default pipeline would prefer another (the more efficient A40 with a
// learned cost, a fuller node).
TEST(PlacementTest, FirstFitTakesTheFirstFeasibleNodeByName) {
  auto pipeline = PlacementPipeline::FirstFit(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(2, "V100").Used(0).Used(1).Build(),
                                     NodeBuilder("b").Gpus(2, "V100").Build(),
                                     NodeBuilder("c").Gpus(2, "A40", 300).Build()});
  PlacementRequest request = Request(1);
  request.learned_cost["A40"] = {0.5, 300};
  request.learned_cost["V100"] = {1.5, 180};
  PlacementResult result = pipeline->Place(request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "b");
  EXPECT_TRUE(result.verdicts[1].scores.empty());
  // A gang reserves as it goes: two replicas take b and c.
  request.replicas = 2;
  request.gpus = 2;
  result = pipeline->Place(request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "b");
  EXPECT_EQ(result.replicas[1].node, "c");
  // The snapshot itself is untouched by a placement.
  EXPECT_TRUE(cluster.nodes[1].gpus[0].free);
}

// With the class's learned costs on every candidate model, placement
// compares predicted joules per sample, not power limits: here the A40
// (higher limit) does a sample for fewer joules than the V100.
TEST(PlacementTest, LearnedJoulesPerSampleBeatThePowerLimitPrior) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster({NodeBuilder("a40").Gpus(1, "A40", 300).Build(),
                                     NodeBuilder("v100").Gpus(1, "V100", 250).Build()});
  PlacementRequest request = Request(1);
  // Without learned costs the lower power limit wins.
  EXPECT_EQ(pipeline->Place(request, cluster).replicas[0].node, "v100");
  request.learned_cost["A40"] = {0.8, 300};
  request.learned_cost["V100"] = {1.2, 180};
  PlacementResult result = pipeline->Place(request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "a40");
  // A model without a learned cost means no comparison in joules at all.
  request.learned_cost.erase("V100");
  EXPECT_EQ(pipeline->Place(request, cluster).replicas[0].node, "v100");
}

// Energy routing: a job routed to A40 is kept off V100 nodes, with the
// routing's reason, even when only V100 GPUs are free.
TEST(PlacementTest, EnergyRoutingKeepsAJobOffOtherModels) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster({NodeBuilder("a40").Gpus(1, "A40", 300).Used(0).Build(),
                                     NodeBuilder("v100").Gpus(2, "V100", 250).Build()});
  PlacementRequest request = Request(1);
  request.routed_models = {"A40"};
  request.routing_note = "A40 does this work for fewer joules";
  PlacementResult result = pipeline->Place(request, cluster);
  EXPECT_EQ(result.kind, PlacementResult::Kind::kRetryLater);
  EXPECT_THAT(result.reason, HasSubstr("EnergyRouting: A40 does this work"));
  // Once the A40 is free it takes the job; without routing any model does.
  cluster.nodes[0].gpus[0].free = true;
  EXPECT_EQ(pipeline->Place(request, cluster).replicas[0].node, "a40");
  request.routed_models.clear();
  cluster.nodes[0].gpus[0].free = false;
  EXPECT_EQ(pipeline->Place(request, cluster).replicas[0].node, "v100");
  // First fit ignores routing (the energy-oblivious baseline).
  request.routed_models = {"A40"};
  EXPECT_EQ(PlacementPipeline::FirstFit(absl::Seconds(30))->Place(request, cluster).kind,
            PlacementResult::Kind::kPlaced);
}

TEST(PlacementTest, EnergyRoutingPicksTheRoutedGpusOfAMixedNode) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  // Two V100s (cooler) and two A40s on one node; the job is routed to A40.
  ClusterSnapshot cluster = Cluster(
      {NodeBuilder("mixed").Gpus(2, "V100").Gpus(2, "A40").Temp(2, 60).Temp(3, 50).Build()});
  PlacementRequest request = Request(2);
  request.routed_models = {"A40"};
  PlacementResult result = pipeline->Place(request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_THAT(result.replicas[0].gpu_indices, ElementsAre(2, 3));
  // Unrouted, the coolest: the V100s.
  request.routed_models.clear();
  EXPECT_THAT(pipeline->Place(request, cluster).replicas[0].gpu_indices, ElementsAre(0, 1));
}

// A suspended node loses to any awake one, even an idle node with a worse
// power prior; it is chosen when nothing awake fits.
TEST(PlacementTest, AwakeNodesComeBeforeSuspendedOnes) {
  auto pipeline = PlacementPipeline::Default(absl::Seconds(30));
  ClusterSnapshot cluster = Cluster({NodeBuilder("asleep").Gpus(2, "V100", 250).Asleep().Build(),
                                     NodeBuilder("awake").Gpus(2, "V100", 300).Build()});
  EXPECT_EQ(pipeline->Place(Request(1), cluster).replicas[0].node, "awake");
  EXPECT_EQ(pipeline->Place(Request(2), cluster).replicas[0].node, "awake");
  cluster.nodes[1].gpus[0].free = false;
  EXPECT_EQ(pipeline->Place(Request(2), cluster).replicas[0].node, "asleep");
}

}  // namespace
}  // namespace joule
