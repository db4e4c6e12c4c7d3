#include "sim/trace/cluster_config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;

std::string Runfile(const std::string& relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return std::string(srcdir ? srcdir : ".") + "/" +
         (workspace ? workspace : "joule") + "/" + relative;
}

TEST(ClusterConfigTest, ShippedV100) {
  absl::StatusOr<ClusterConfig> config =
      LoadClusterConfig(Runfile("sim/clusters/v100.yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "v100");
  ASSERT_EQ(config->node_types.size(), 1u);
  EXPECT_EQ(config->node_types[0].gpu_model, "V100");
  EXPECT_EQ(config->node_types[0].gpus_per_node, 8);
  EXPECT_EQ(config->node_types[0].count, 125);
  EXPECT_DOUBLE_EQ(config->node_types[0].static_power_w, 300);
  EXPECT_EQ(config->TotalGpus(), 1000);
}

TEST(ClusterConfigTest, ShippedMixed) {
  absl::StatusOr<ClusterConfig> config =
      LoadClusterConfig(Runfile("sim/clusters/mixed.yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "mixed");
  ASSERT_EQ(config->node_types.size(), 3u);
  EXPECT_EQ(config->node_types[0].gpu_model, "V100");
  EXPECT_EQ(config->node_types[1].gpu_model, "A40");
  EXPECT_EQ(config->node_types[2].gpu_model, "RTX6000");
  EXPECT_EQ(config->TotalGpus(), 1000);
}

TEST(ClusterConfigTest, ShippedSmall) {
  absl::StatusOr<ClusterConfig> config =
      LoadClusterConfig(Runfile("sim/clusters/small.yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "small");
  EXPECT_EQ(config->TotalGpus(), 16);
}

struct BadCase {
  const char* name;
  const char* yaml;
  const char* expected;  // substring after "<source>:"
};

TEST(ClusterConfigTest, BadInputNamesLineColumnAndField) {
  const BadCase cases[] = {
      {"syntax", "name: x\nnode_types: [\n", "3:1: <yaml>"},
      {"unclosed_map", "name: x\nnode_types:\n  - {name: a\n", "4:1: <yaml>"},
      {"not_map", "- a\n- b\n", "1:1: <root>"},
      {"no_name", "node_types: []\n", "1:1: name: required"},
      {"unknown_root", "name: x\nnodes: []\n", "2:1: nodes: unknown key"},
      {"empty_types", "name: x\nnode_types: []\n", "2:13: node_types"},
      {"bad_model",
       "name: x\nnode_types:\n  - name: a\n    gpu_model: H 100\n"
       "    gpus_per_node: 8\n    static_power_w: 1\n    count: 1\n",
       "4:16: node_types[0].gpu_model: 'H 100' is not a GPU model name"},
      {"bad_gpus",
       "name: x\nnode_types:\n  - name: a\n    gpu_model: A40\n"
       "    gpus_per_node: eight\n    static_power_w: 1\n    count: 1\n",
       "5:20: node_types[0].gpus_per_node: expected an integer"},
      {"zero_count",
       "name: x\nnode_types:\n  - name: a\n    gpu_model: A40\n"
       "    gpus_per_node: 8\n    static_power_w: 1\n    count: 0\n",
       "7:12: node_types[0].count: must be >= 1"},
      {"neg_power",
       "name: x\nnode_types:\n  - name: a\n    gpu_model: A40\n"
       "    gpus_per_node: 8\n    static_power_w: -3\n    count: 1\n",
       "6:21: node_types[0].static_power_w"},
      {"missing_count",
       "name: x\nnode_types:\n  - name: a\n    gpu_model: A40\n"
       "    gpus_per_node: 8\n    static_power_w: 1\n",
       "3:5: node_types[0].count: required field is missing"},
      {"typo_key", "name: x\nnode_types:\n  - name: a\n    gpu_modle: A40\n",
       "4:5: node_types[0].gpu_modle: unknown key"},
      {"duplicate",
       "name: x\nnode_types:\n"
       "  - {name: a, gpu_model: A40, gpus_per_node: 8, static_power_w: 1, "
       "count: 1}\n"
       "  - {name: a, gpu_model: V100, gpus_per_node: 8, static_power_w: 1, "
       "count: 1}\n",
       "4:5: node_types[1].name: duplicate node type 'a'"},
  };
  for (const BadCase& c : cases) {
    const std::string path = ::testing::TempDir() + "/" + c.name + ".yaml";
    {
      std::ofstream out(path);
      out << c.yaml;
    }
    absl::StatusOr<ClusterConfig> config = LoadClusterConfig(path);
    ASSERT_FALSE(config.ok()) << c.name;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(std::string(config.status().message()),
                HasSubstr(path + ":" + c.expected))
        << c.name << ": " << config.status();
  }
}

TEST(ClusterConfigTest, MissingFile) {
  absl::StatusOr<ClusterConfig> config =
      LoadClusterConfig(::testing::TempDir() + "/nope.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace joule::sim
