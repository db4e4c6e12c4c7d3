#include "scheduler/placement/pipeline.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/placement/profile.h"
#include "scheduler/placement/test_nodes.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing_nodes::Cluster;
using testing_nodes::kNow;
using testing_nodes::NodeBuilder;
using testing_nodes::Request;

std::unique_ptr<PlacementPipeline> FromProfile(const PlacementProfile& profile) {
  absl::StatusOr<std::unique_ptr<PlacementPipeline>> pipeline =
      PlacementPipeline::FromProfile(profile, PluginArgs{absl::Seconds(30)});
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  return *std::move(pipeline);
}
std::unique_ptr<PlacementPipeline> Energy() { return FromProfile(EnergyProfile()); }
std::unique_ptr<PlacementPipeline> FirstFit() { return FromProfile(FirstFitProfile()); }

// Places on a freshly indexed copy, so a test may reuse its cluster.
PlacementResult PlaceCopy(const PlacementPipeline& pipeline, const PlacementRequest& request,
                          ClusterSnapshot cluster) {
  cluster.Index();
  return pipeline.Place(request, &cluster);
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
  PlacementResult result = PlaceCopy(*Energy(), c.request, c.cluster);
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
             Request(1), PlacementResult::Kind::kRetryLater, {}, "2 too hot"},
        Case{"NotEnoughCpusNow",
             Cluster({NodeBuilder("c").Cpus(4, 0.5).Build()}), Request(0, 1, "", 2),
             PlacementResult::Kind::kRetryLater, {}, "FreeResources"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(PlacementTest, PicksCoolestGpus) {
  ClusterSnapshot cluster = Cluster(
      {NodeBuilder("a").Gpus(4, "V100").Temp(0, 80).Temp(1, 45).Temp(2, 35).Temp(3, 70).Build()});
  PlacementResult result = PlaceCopy(*Energy(), Request(2), cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_THAT(result.replicas[0].gpu_indices, ElementsAre(1, 2));
}

// First fit: no scorers, the first feasible node in name order, even where
// the default pipeline would prefer another (the more efficient A40 with a
// learned cost, a fuller node).
TEST(PlacementTest, FirstFitTakesTheFirstFeasibleNodeByName) {
  auto pipeline = FirstFit();
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(2, "V100").Used(0).Used(1).Build(),
                                     NodeBuilder("b").Gpus(2, "V100").Build(),
                                     NodeBuilder("c").Gpus(2, "A40", 300).Build()});
  PlacementRequest request = Request(1);
  request.learned_cost["A40"] = {0.5, 300};
  request.learned_cost["V100"] = {1.5, 180};
  PlacementResult result = PlaceCopy(*pipeline, request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "b");
  // It looked no further than the first feasible node, and scored nothing.
  EXPECT_EQ(result.summary.nodes_feasible, 1);
  ASSERT_EQ(result.summary.top.size(), 1u);
  EXPECT_TRUE(result.summary.top[0].scores.empty());
  // A gang reserves as it goes: two replicas take b and c.
  request.replicas = 2;
  request.gpus = 2;
  result = PlaceCopy(*pipeline, request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "b");
  EXPECT_EQ(result.replicas[1].node, "c");
  // PlaceCopy worked on a copy.
  EXPECT_TRUE(cluster.nodes[1].gpus[0].free);
}

// With the class's learned costs on every candidate model, placement
// compares predicted joules per sample, not power limits: here the A40
// (higher limit) does a sample for fewer joules than the V100.
TEST(PlacementTest, LearnedJoulesPerSampleBeatThePowerLimitPrior) {
  auto pipeline = Energy();
  ClusterSnapshot cluster = Cluster({NodeBuilder("a40").Gpus(1, "A40", 300).Build(),
                                     NodeBuilder("v100").Gpus(1, "V100", 250).Build()});
  PlacementRequest request = Request(1);
  // Without learned costs the lower power limit wins.
  EXPECT_EQ(PlaceCopy(*pipeline, request, cluster).replicas[0].node, "v100");
  request.learned_cost["A40"] = {0.8, 300};
  request.learned_cost["V100"] = {1.2, 180};
  PlacementResult result = PlaceCopy(*pipeline, request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.replicas[0].node, "a40");
  // A model without a learned cost means no comparison in joules at all.
  request.learned_cost.erase("V100");
  EXPECT_EQ(PlaceCopy(*pipeline, request, cluster).replicas[0].node, "v100");
}

// Energy routing: a job routed to A40 is kept off V100 nodes, with the
// routing's reason, even when only V100 GPUs are free.
TEST(PlacementTest, EnergyRoutingKeepsAJobOffOtherModels) {
  auto pipeline = Energy();
  ClusterSnapshot cluster = Cluster({NodeBuilder("a40").Gpus(1, "A40", 300).Used(0).Build(),
                                     NodeBuilder("v100").Gpus(2, "V100", 250).Build()});
  PlacementRequest request = Request(1);
  request.routed_models = {"A40"};
  request.routing_note = "A40 does this work for fewer joules";
  PlacementResult result = PlaceCopy(*pipeline, request, cluster);
  EXPECT_EQ(result.kind, PlacementResult::Kind::kRetryLater);
  EXPECT_THAT(result.reason, HasSubstr("EnergyRouting: A40 does this work"));
  // Once the A40 is free it takes the job; without routing any model does.
  cluster.nodes[0].gpus[0].free = true;
  EXPECT_EQ(PlaceCopy(*pipeline, request, cluster).replicas[0].node, "a40");
  request.routed_models.clear();
  cluster.nodes[0].gpus[0].free = false;
  EXPECT_EQ(PlaceCopy(*pipeline, request, cluster).replicas[0].node, "v100");
  // First fit ignores routing (the energy-oblivious baseline).
  request.routed_models = {"A40"};
  EXPECT_EQ(PlaceCopy(*FirstFit(), request, cluster).kind,
            PlacementResult::Kind::kPlaced);
}

TEST(PlacementTest, EnergyRoutingPicksTheRoutedGpusOfAMixedNode) {
  auto pipeline = Energy();
  // Two V100s (cooler) and two A40s on one node; the job is routed to A40.
  ClusterSnapshot cluster = Cluster(
      {NodeBuilder("mixed").Gpus(2, "V100").Gpus(2, "A40").Temp(2, 60).Temp(3, 50).Build()});
  PlacementRequest request = Request(2);
  request.routed_models = {"A40"};
  PlacementResult result = PlaceCopy(*pipeline, request, cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_THAT(result.replicas[0].gpu_indices, ElementsAre(2, 3));
  // Unrouted, the coolest: the V100s.
  request.routed_models.clear();
  EXPECT_THAT(PlaceCopy(*pipeline, request, cluster).replicas[0].gpu_indices, ElementsAre(0, 1));
}

// A suspended node loses to any awake one, even an idle node with a worse
// power prior; it is chosen when nothing awake fits.
TEST(PlacementTest, AwakeNodesComeBeforeSuspendedOnes) {
  auto pipeline = Energy();
  ClusterSnapshot cluster = Cluster({NodeBuilder("asleep").Gpus(2, "V100", 250).Asleep().Build(),
                                     NodeBuilder("awake").Gpus(2, "V100", 300).Build()});
  EXPECT_EQ(PlaceCopy(*pipeline, Request(1), cluster).replicas[0].node, "awake");
  EXPECT_EQ(PlaceCopy(*pipeline, Request(2), cluster).replicas[0].node, "awake");
  cluster.nodes[1].gpus[0].free = false;
  EXPECT_EQ(PlaceCopy(*pipeline, Request(2), cluster).replicas[0].node, "asleep");
}


TEST(PlacementTest, ExplainsWithCountsAndTheBestCandidates) {
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(1, "V100").Build(),
                                     NodeBuilder("b").Gpus(1, "V100").Down().Build(),
                                     NodeBuilder("c").Gpus(1, "V100").Used(0).Build()});
  PlacementResult result = PlaceCopy(*Energy(), Request(1), cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  const CycleSummary& summary = result.summary;
  EXPECT_EQ(summary.nodes_total, 3);
  // c has no free GPU: the index rules it out without visiting it.
  EXPECT_EQ(summary.nodes_filtered, 2);
  EXPECT_EQ(summary.nodes_feasible, 1);
  EXPECT_FALSE(summary.sampled);
  ASSERT_EQ(summary.top.size(), 1u);
  EXPECT_EQ(summary.top[0].node, "a");
  EXPECT_EQ(summary.top[0].scores.size(), 5u);
  EXPECT_GT(summary.top[0].total_score, 0);
  ASSERT_EQ(summary.rejections.size(), 2u);
  EXPECT_EQ(summary.rejections[0].plugin, "NodeReady");
  EXPECT_EQ(summary.rejections[0].nodes, 1);
  EXPECT_EQ(summary.rejections[0].example, "b: node is down");
  EXPECT_EQ(summary.rejections[1].plugin, "FreeResources");
  EXPECT_THAT(summary.rejections[1].example, HasSubstr("fewer than 1 free GPUs"));
}

TEST(PlacementTest, CountsRejectionsByPluginAndKeepsTheTopFew) {
  std::vector<NodeView> nodes;
  for (int i = 0; i < 10; ++i) nodes.push_back(NodeBuilder("free-" + std::to_string(i)).Gpus(8, "V100").Build());
  for (int i = 0; i < 7; ++i) nodes.push_back(NodeBuilder("small-" + std::to_string(i)).Gpus(2, "V100").Build());
  for (int i = 0; i < 5; ++i) {
    nodes.push_back(NodeBuilder("full-" + std::to_string(i)).Gpus(8, "V100").Used(0).Used(1).Used(2).Used(3).Used(4).Build());
  }
  PlacementResult result = PlaceCopy(*Energy(), Request(4), Cluster(nodes));
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_EQ(result.summary.nodes_total, 22);
  EXPECT_EQ(result.summary.nodes_feasible, 10);
  EXPECT_EQ(result.summary.top.size(), 5u);
  ASSERT_EQ(result.summary.rejections.size(), 2u);
  EXPECT_EQ(result.summary.rejections[0].plugin, "GpuModel");
  EXPECT_EQ(result.summary.rejections[0].code, PluginCode::kUnresolvable);
  EXPECT_EQ(result.summary.rejections[0].nodes, 7);
  EXPECT_EQ(result.summary.rejections[1].plugin, "FreeResources");
  EXPECT_EQ(result.summary.rejections[1].nodes, 5);
}

TEST(PlacementTest, APreFilterSettlesAFullClusterWithoutVisitingNodes) {
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(2, "V100").Used(0).Build(),
                                     NodeBuilder("b").Gpus(2, "V100").Used(1).Build()});
  PlacementResult result = PlaceCopy(*Energy(), Request(2), cluster);
  EXPECT_EQ(result.kind, PlacementResult::Kind::kRetryLater);
  EXPECT_EQ(result.summary.nodes_filtered, 0);
  EXPECT_EQ(result.summary.pre_filter.plugin, "FreeResources");
  EXPECT_EQ(result.summary.pre_filter.code, PluginCode::kUnschedulable);
  EXPECT_THAT(result.reason, HasSubstr("no node has 2 free GPUs now (the most free on one node: 1)"));
  // More GPUs than any node has: unresolvable, and the job is infeasible.
  result = PlaceCopy(*Energy(), Request(3), cluster);
  EXPECT_EQ(result.kind, PlacementResult::Kind::kInfeasible);
  EXPECT_EQ(result.summary.pre_filter.plugin, "GpuModel");
  EXPECT_EQ(result.summary.pre_filter.code, PluginCode::kUnresolvable);
}

TEST(PlacementTest, PlaceReservesWhatItPlacesAndNothingOfAGangThatFails) {
  ClusterSnapshot cluster = Cluster({NodeBuilder("a").Gpus(2, "V100").Build(),
                                     NodeBuilder("b").Gpus(1, "V100").Build()});
  auto pipeline = Energy();
  PlacementResult result = pipeline->Place(Request(2, 2), &cluster);
  EXPECT_EQ(result.kind, PlacementResult::Kind::kRetryLater);
  EXPECT_THAT(result.reason, HasSubstr("replica 2 of 2"));
  EXPECT_TRUE(cluster.nodes[0].gpus[0].free);
  EXPECT_TRUE(cluster.nodes[0].gpus[1].free);
  EXPECT_EQ(cluster.nodes[0].running_tasks, 0);
  EXPECT_EQ(cluster.MostFreeOnOneNode("V100"), 2);
  result = pipeline->Place(Request(2), &cluster);
  ASSERT_EQ(result.kind, PlacementResult::Kind::kPlaced);
  EXPECT_FALSE(cluster.nodes[0].gpus[0].free);
  EXPECT_EQ(cluster.nodes[0].free_cpus, 15);
  EXPECT_EQ(cluster.nodes[0].running_tasks, 1);
  EXPECT_EQ(cluster.MostFreeOnOneNode("V100"), 1);
}

TEST(PlacementTest, SamplesABoundedDeterministicShareOfFeasibleNodes) {
  std::vector<NodeView> nodes;
  for (int i = 0; i < 300; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "n%03d", i);
    nodes.push_back(NodeBuilder(name).Gpus(4, "V100").Build());
  }
  ClusterSnapshot cluster = Cluster(nodes);
  // Adaptive: 50 % - 300/125 % = 48 % of 300 nodes.
  PlacementProfile profile = EnergyProfile();
  auto adaptive = FromProfile(profile);
  EXPECT_EQ(adaptive->FeasibleNodesToFind(300), 144);
  EXPECT_EQ(adaptive->FeasibleNodesToFind(50), 50);
  EXPECT_EQ(adaptive->FeasibleNodesToFind(10'000), 500);
  PlacementResult first = PlaceCopy(*adaptive, Request(1), cluster);
  EXPECT_EQ(first.summary.nodes_feasible, 144);
  EXPECT_TRUE(first.summary.sampled);
  EXPECT_EQ(PlaceCopy(*adaptive, Request(1), cluster).replicas[0].node, first.replicas[0].node);
  profile.percentage_of_nodes_to_score = 100;
  PlacementResult all = PlaceCopy(*FromProfile(profile), Request(1), cluster);
  EXPECT_EQ(all.summary.nodes_feasible, 300);
  EXPECT_FALSE(all.summary.sampled);
  profile.percentage_of_nodes_to_score = 10;
  profile.min_feasible_nodes_to_score = 20;
  EXPECT_EQ(FromProfile(profile)->FeasibleNodesToFind(300), 30);
}

// A profile's weights decide: with only Consolidation the fuller node wins,
// with only EnergyEfficiency the cheaper one.
TEST(PlacementTest, ProfilesWeighScorersDifferently) {
  ClusterSnapshot cluster = Cluster({NodeBuilder("busy").Gpus(2, "A40", 300).Used(0).Build(),
                                     NodeBuilder("cheap").Gpus(2, "V100", 150).StaticPower(0).Build()});
  PlacementProfile packing = EnergyProfile();
  packing.scorers = {{"Consolidation", 1}};
  PlacementProfile energy = EnergyProfile();
  energy.scorers = {{"EnergyEfficiency", 1}};
  EXPECT_EQ(PlaceCopy(*FromProfile(packing), Request(1), cluster).replicas[0].node, "busy");
  EXPECT_EQ(PlaceCopy(*FromProfile(energy), Request(1), cluster).replicas[0].node, "cheap");
}

}  // namespace
}  // namespace joule
