#include "scheduler/placement/cluster.h"

#include <vector>

#include "gtest/gtest.h"
#include "scheduler/placement/test_nodes.h"

namespace joule {
namespace {

using testing_nodes::Cluster;
using testing_nodes::NodeBuilder;

TEST(ClusterSnapshotTest, IndexesFreeAndTotalGpusPerModel) {
  ClusterSnapshot snapshot = Cluster({NodeBuilder("a").Gpus(4, "V100").Used(0).Build(),
                                      NodeBuilder("b").Gpus(2, "A40").Gpus(2, "V100").Build(),
                                      NodeBuilder("c").Build()});
  EXPECT_EQ(snapshot.Find("b"), 1);
  EXPECT_EQ(snapshot.Find("z"), -1);
  ASSERT_NE(snapshot.model("V100"), nullptr);
  EXPECT_EQ(snapshot.model("H100"), nullptr);
  EXPECT_EQ(snapshot.model("V100")->most_per_node, 4);
  EXPECT_EQ(snapshot.model("")->most_per_node, 4);
  EXPECT_EQ(snapshot.MostFreeOnOneNode("V100"), 3);
  EXPECT_EQ(snapshot.MostFreeOnOneNode("A40"), 2);
  EXPECT_EQ(snapshot.MostFreeOnOneNode(""), 4);
  EXPECT_EQ(snapshot.model("V100")->NodesWithFree(2), 2);
  EXPECT_EQ(snapshot.model("V100")->NodesWithFree(3), 1);
  EXPECT_EQ(snapshot.model("V100")->NodesWithTotal(3), 1);
  EXPECT_EQ(snapshot.model("")->NodesWithTotal(4), 2);
  EXPECT_EQ(snapshot.most_cpus(), 16);
}

TEST(ClusterSnapshotTest, ReserveAndUnreserveKeepTheIndexTrue) {
  ClusterSnapshot snapshot = Cluster({NodeBuilder("a").Gpus(4, "V100").Build(),
                                      NodeBuilder("b").Gpus(2, "V100").Build()});
  snapshot.Reserve(0, {0, 1, 2}, 2, 1 << 20);
  EXPECT_EQ(snapshot.MostFreeOnOneNode("V100"), 2);
  EXPECT_EQ(snapshot.model("V100")->NodesWithFree(1), 2);
  EXPECT_EQ(snapshot.nodes[0].free_cpus, 14);
  EXPECT_EQ(snapshot.nodes[0].running_tasks, 1);
  snapshot.Reserve(1, {0, 1}, 1, 0);
  EXPECT_EQ(snapshot.MostFreeOnOneNode("V100"), 1);
  snapshot.Unreserve(0, {0, 1, 2}, 2, 1 << 20);
  EXPECT_EQ(snapshot.MostFreeOnOneNode("V100"), 4);
  EXPECT_EQ(snapshot.nodes[0].free_cpus, 16);
  EXPECT_EQ(snapshot.nodes[0].running_tasks, 0);
  // The same as indexing afresh.
  ClusterSnapshot fresh = snapshot;
  fresh.Index();
  for (int k = 0; k <= 4; ++k) {
    EXPECT_EQ(fresh.model("V100")->by_free[k], snapshot.model("V100")->by_free[k]) << k;
  }
}

}  // namespace
}  // namespace joule
