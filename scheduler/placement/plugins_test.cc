// Each plugin alone, table-driven: a node (or a set of candidates), a
// request, and what the plugin must say.

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/placement/framework.h"
#include "scheduler/placement/gpu_pick.h"
#include "scheduler/placement/plugins/awake.h"
#include "scheduler/placement/plugins/consolidation.h"
#include "scheduler/placement/plugins/energy_efficiency.h"
#include "scheduler/placement/plugins/energy_routing.h"
#include "scheduler/placement/plugins/free_resources.h"
#include "scheduler/placement/plugins/gpu_fit.h"
#include "scheduler/placement/plugins/gpu_model.h"
#include "scheduler/placement/plugins/node_ready.h"
#include "scheduler/placement/plugins/telemetry_fresh.h"
#include "scheduler/placement/plugins/thermal_headroom.h"
#include "scheduler/placement/test_nodes.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using testing_nodes::Cluster;
using testing_nodes::kNow;
using testing_nodes::NodeBuilder;
using testing_nodes::Request;

struct FilterCase {
  std::string name;
  NodeView node;
  PlacementRequest request;
  PluginCode code;
  // A substring of Reason when the node is turned away.
  std::string reason;
};

void CheckFilter(const FilterPlugin& filter, const std::vector<FilterCase>& cases) {
  for (const FilterCase& c : cases) {
    SCOPED_TRACE(c.name);
    ClusterSnapshot snapshot = Cluster({c.node});
    EXPECT_EQ(filter.Filter(c.request, c.node, snapshot), c.code);
    if (c.code != PluginCode::kSuccess) {
      EXPECT_THAT(filter.Reason(c.request, c.node, snapshot), HasSubstr(c.reason));
    }
  }
}

PlacementRequest Routed(PlacementRequest request, std::set<std::string> models) {
  request.routed_models = std::move(models);
  request.routing_note = "routed for fewer joules";
  return request;
}

TEST(NodeReadyFilterTest, Table) {
  CheckFilter(NodeReadyFilter(),
              {{"ready", NodeBuilder("a").Build(), Request(0), PluginCode::kSuccess, ""},
               {"down", NodeBuilder("a").Down().Build(), Request(0), PluginCode::kUnschedulable,
                "node is down"}});
}

TEST(TelemetryFreshFilterTest, Table) {
  CheckFilter(TelemetryFreshFilter(absl::Seconds(30)),
              {{"fresh", NodeBuilder("a").Build(), Request(0), PluginCode::kSuccess, ""},
               {"at the limit", NodeBuilder("a").LastTelemetry(kNow - absl::Seconds(30)).Build(),
                Request(0), PluginCode::kSuccess, ""},
               {"stale", NodeBuilder("a").LastTelemetry(kNow - absl::Seconds(31)).Build(),
                Request(0), PluginCode::kUnschedulable, "no telemetry for 31s (limit 30s)"},
               {"never", NodeBuilder("a").LastTelemetry(absl::InfinitePast()).Build(), Request(0),
                PluginCode::kUnschedulable, "no telemetry"}});
}

TEST(GpuModelFilterTest, Table) {
  CheckFilter(GpuModelFilter(),
              {{"cpu request", NodeBuilder("a").Build(), Request(0), PluginCode::kSuccess, ""},
               {"enough", NodeBuilder("a").Gpus(4, "V100").Build(), Request(4), PluginCode::kSuccess, ""},
               {"enough though busy", NodeBuilder("a").Gpus(4, "V100").Used(0).Build(), Request(4),
                PluginCode::kSuccess, ""},
               {"too few", NodeBuilder("a").Gpus(2, "V100").Build(), Request(4),
                PluginCode::kUnresolvable, "has 2 GPUs, a replica needs 4"},
               {"other model", NodeBuilder("a").Gpus(8, "V100").Build(), Request(1, 1, "A40"),
                PluginCode::kUnresolvable, "has 0 A40 GPUs"},
               {"mixed node counts its model", NodeBuilder("a").Gpus(2, "V100").Gpus(2, "A40").Build(),
                Request(3, 1, "A40"), PluginCode::kUnresolvable, "has 2 A40 GPUs"}});
}

TEST(GpuModelFilterTest, PreFilterUsesTheModelMaxima) {
  ClusterSnapshot snapshot = Cluster({NodeBuilder("a").Gpus(4, "V100").Build(),
                                      NodeBuilder("b").Gpus(2, "A40").Build()});
  GpuModelFilter filter;
  EXPECT_TRUE(filter.PreFilter(Request(4), snapshot).ok());
  EXPECT_TRUE(filter.PreFilter(Request(2, 1, "A40"), snapshot).ok());
  PluginStatus status = filter.PreFilter(Request(3, 1, "A40"), snapshot);
  EXPECT_EQ(status.code, PluginCode::kUnresolvable);
  EXPECT_EQ(status.plugin, "GpuModel");
  EXPECT_THAT(status.reason, HasSubstr("no node has 3 A40 GPUs (the most on one node: 2)"));
  EXPECT_EQ(filter.PreFilter(Request(1, 1, "H100"), snapshot).code, PluginCode::kUnresolvable);
}

TEST(FreeResourcesFilterTest, Table) {
  CheckFilter(
      FreeResourcesFilter(),
      {{"free", NodeBuilder("a").Gpus(2, "V100").Build(), Request(2), PluginCode::kSuccess, ""},
       {"busy", NodeBuilder("a").Gpus(2, "V100").Used(0).Build(), Request(2),
        PluginCode::kUnschedulable, "1 free GPUs, a replica needs 2"},
       {"hot", NodeBuilder("a").Gpus(2, "V100").Hot(1).Build(), Request(2),
        PluginCode::kUnschedulable, "1 more too hot"},
       {"held by a pod", NodeBuilder("a").Gpus(2, "V100").HeldBy(0, "ml/train-0").Build(), Request(2),
        PluginCode::kUnschedulable, "GPU 0 held by pod ml/train-0"},
       {"cpus now", NodeBuilder("a").Cpus(4, 0.5).Build(), Request(0, 1, "", 2),
        PluginCode::kUnschedulable, "0.50 free CPUs, a replica needs 2.00"},
       {"cpus never", NodeBuilder("a").Cpus(4, 4).Build(), Request(0, 1, "", 8),
        PluginCode::kUnresolvable, "4.00 free CPUs, a replica needs 8.00"},
       {"memory now", NodeBuilder("a").Memory(int64_t{4} << 30, 0).Build(), Request(0),
        PluginCode::kUnschedulable, "0 free memory bytes"},
       {"memory never", NodeBuilder("a").Memory(1 << 20, 1 << 20).Build(), Request(0),
        PluginCode::kUnresolvable, "free memory bytes, a replica needs 1073741824"}});
}

TEST(FreeResourcesFilterTest, PreFilterUsesTheFreeIndex) {
  ClusterSnapshot snapshot = Cluster({NodeBuilder("a").Gpus(4, "V100").Used(0).Used(1).Build(),
                                      NodeBuilder("b").Gpus(4, "V100").Used(0).Build()});
  FreeResourcesFilter filter;
  EXPECT_TRUE(filter.PreFilter(Request(3), snapshot).ok());
  PluginStatus status = filter.PreFilter(Request(4), snapshot);
  EXPECT_EQ(status.code, PluginCode::kUnschedulable);
  EXPECT_THAT(status.reason, HasSubstr("no node has 4 free GPUs now (the most free on one node: 3)"));
  EXPECT_EQ(filter.PreFilter(Request(0, 1, "", 17), snapshot).code, PluginCode::kUnresolvable);
  snapshot.Reserve(1, {1}, 1, 0);
  EXPECT_EQ(filter.PreFilter(Request(3), snapshot).code, PluginCode::kUnschedulable);
}

TEST(EnergyRoutingFilterTest, Table) {
  NodeView mixed = NodeBuilder("m").Gpus(2, "V100").Gpus(2, "A40").Build();
  CheckFilter(EnergyRoutingFilter(),
              {{"not routed", NodeBuilder("a").Gpus(2, "V100").Build(), Request(2),
                PluginCode::kSuccess, ""},
               {"routed here", NodeBuilder("a").Gpus(2, "A40").Build(), Routed(Request(2), {"A40"}),
                PluginCode::kSuccess, ""},
               {"routed elsewhere", NodeBuilder("a").Gpus(2, "V100").Build(),
                Routed(Request(1), {"A40"}), PluginCode::kUnschedulable, "routed for fewer joules"},
               {"mixed node, enough routed", mixed, Routed(Request(2), {"A40"}), PluginCode::kSuccess, ""},
               {"mixed node, too few routed", mixed, Routed(Request(3), {"A40"}),
                PluginCode::kUnschedulable, "routed"},
               {"cpu request", NodeBuilder("a").Build(), Routed(Request(0), {"A40"}),
                PluginCode::kSuccess, ""}});
}

struct ScoreCase {
  std::string name;
  NodeView node;
  PlacementRequest request;
  double score;
};

void CheckScorer(const ScorePlugin& scorer, const std::vector<ScoreCase>& cases) {
  for (const ScoreCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Candidate> candidates = {{0, &c.node, PickGpus(c.request, c.node)}};
    std::unique_ptr<ScorePlugin::State> state = scorer.PreScore(c.request, candidates);
    std::vector<double> scores = {scorer.Score(c.request, candidates[0], state.get())};
    scorer.Normalize(state.get(), &scores);
    EXPECT_NEAR(scores[0], c.score, 1e-9);
  }
}

TEST(AwakeScorerTest, Table) {
  CheckScorer(AwakeScorer(), {{"awake", NodeBuilder("a").Gpus(1, "V100").Build(), Request(1), 100},
                              {"asleep", NodeBuilder("a").Gpus(1, "V100").Asleep().Build(), Request(1), 0}});
}

TEST(ConsolidationScorerTest, Table) {
  CheckScorer(ConsolidationScorer(),
              {{"idle gpu node", NodeBuilder("a").Gpus(4, "V100").Build(), Request(1), 0},
               {"half used", NodeBuilder("a").Gpus(4, "V100").Used(0).Used(1).Build(), Request(1), 50},
               {"idle cpu node", NodeBuilder("c").Cpus(4, 4).Build(), Request(0), 0},
               {"busy cpu node", NodeBuilder("c").Cpus(4, 1).Build(), Request(0), 75}});
}

TEST(ThermalHeadroomScorerTest, Table) {
  // Throttle at 85 C: a GPU at 40 C has 45/85 of headroom.
  CheckScorer(ThermalHeadroomScorer(),
              {{"cool", NodeBuilder("a").Gpus(1, "V100").Build(), Request(1), 100.0 * 45 / 85},
               {"coolest picked", NodeBuilder("a").Gpus(2, "V100").Temp(0, 80).Build(), Request(1),
                100.0 * 45 / 85},
               {"warmest of the picked counts", NodeBuilder("a").Gpus(2, "V100").Temp(0, 68).Build(),
                Request(2), 100.0 * 17 / 85},
               {"cpu request", NodeBuilder("c").Build(), Request(0), 100}});
}

TEST(GpuFitScorerTest, Table) {
  CheckScorer(GpuFitScorer(), {{"gpu job on gpu node", NodeBuilder("a").Gpus(1, "V100").Build(), Request(1), 100},
                               {"cpu job on gpu node", NodeBuilder("a").Gpus(1, "V100").Build(), Request(0), 0},
                               {"cpu job on cpu node", NodeBuilder("c").Build(), Request(0), 100}});
}

// EnergyEfficiency over a set of candidates: normalized to the cheapest.
TEST(EnergyEfficiencyScorerTest, NormalizesToTheCheapestCandidate) {
  struct Case {
    std::string name;
    std::vector<NodeView> nodes;
    PlacementRequest request;
    std::vector<double> scores;
  };
  PlacementRequest learned = Request(1);
  learned.learned_cost["A40"] = {1.0, 100};
  learned.learned_cost["V100"] = {2.0, 50};
  const std::vector<Case> cases = {
      // Watts: an idle node adds its static power (100 W) to the GPUs' limits.
      {"power prior, idle nodes",
       {NodeBuilder("a").Gpus(1, "A40", 300).Build(), NodeBuilder("b").Gpus(1, "V100", 150).Build()},
       Request(1),
       {100.0 * 250 / 400, 100}},
      {"power prior, busy node skips static",
       {NodeBuilder("a").Gpus(2, "A40", 300).Used(0).Build(), NodeBuilder("b").Gpus(1, "V100", 150).Build()},
       Request(1),
       {100.0 * 250 / 300, 100}},
      // J/sample: A40 1.0 + 100 W / 100 samples/s = 2.0; V100 2.0 + 100/50 = 4.0.
      {"learned joules per sample",
       {NodeBuilder("a").Gpus(1, "A40", 300).Build(), NodeBuilder("b").Gpus(1, "V100", 150).Build()},
       learned,
       {100, 50}},
      {"one model unknown falls back to watts",
       {NodeBuilder("a").Gpus(1, "A40", 300).Build(), NodeBuilder("b").Gpus(1, "H100", 150).Build()},
       learned,
       {100.0 * 250 / 400, 100}},
  };
  EnergyEfficiencyScorer scorer;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Candidate> candidates;
    for (size_t i = 0; i < c.nodes.size(); ++i) {
      candidates.push_back({static_cast<int>(i), &c.nodes[i], PickGpus(c.request, c.nodes[i])});
    }
    std::unique_ptr<ScorePlugin::State> state = scorer.PreScore(c.request, candidates);
    std::vector<double> scores;
    for (const Candidate& candidate : candidates) scores.push_back(scorer.Score(c.request, candidate, state.get()));
    scorer.Normalize(state.get(), &scores);
    ASSERT_EQ(scores.size(), c.scores.size());
    for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(scores[i], c.scores[i], 1e-9) << i;
  }
}

}  // namespace
}  // namespace joule
