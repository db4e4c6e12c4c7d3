#include "scheduler/placement/profile.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

TEST(PlacementConfigTest, ParsesProfiles) {
  absl::StatusOr<PlacementConfig> config = PlacementConfig::Parse(R"(
default_profile: packing
profiles:
  - name: energy
    filters: [GpuModel, NodeReady, TelemetryFresh, FreeResources, EnergyRouting]
    scorers:
      - {name: EnergyEfficiency, weight: 2}
      - {name: Awake, weight: 5}
  - name: packing
    percentage_of_nodes_to_score: 20
    min_feasible_nodes_to_score: 50
    explain_top_candidates: 3
    filters: [GpuModel, NodeReady, FreeResources]
    scorers:
      - name: Consolidation
)", "placement.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->default_profile, "packing");
  ASSERT_EQ(config->profiles.size(), 2u);
  const PlacementProfile* packing = config->Find("packing");
  ASSERT_NE(packing, nullptr);
  EXPECT_EQ(packing->percentage_of_nodes_to_score, 20);
  EXPECT_EQ(packing->min_feasible_nodes_to_score, 50);
  EXPECT_EQ(packing->explain_top_candidates, 3);
  ASSERT_EQ(packing->scorers.size(), 1u);
  EXPECT_EQ(packing->scorers[0].weight, 1);
  const PlacementProfile* energy = config->Find("energy");
  ASSERT_NE(energy, nullptr);
  EXPECT_EQ(energy->filters.size(), 5u);
  EXPECT_EQ(energy->scorers[1].name, "Awake");
  EXPECT_EQ(energy->scorers[1].weight, 5);
  EXPECT_EQ(energy->percentage_of_nodes_to_score, 0);
}

TEST(PlacementConfigTest, TheFirstProfileIsTheDefaultUnlessNamed) {
  absl::StatusOr<PlacementConfig> config = PlacementConfig::Parse(
      "profiles:\n  - name: only\n    filters: [GpuModel, NodeReady, FreeResources]\n", "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->default_profile, "only");
}

TEST(PlacementConfigTest, RefusesBadConfigsNamingLineAndField) {
  const std::string good_filters = "    filters: [GpuModel, NodeReady, FreeResources]\n";
  struct Case {
    std::string text;
    std::string error;
  };
  const Case cases[] = {
      {"profiles: [", "p.yaml line"},
      {"- a\n", "p.yaml line 1: document: expected a mapping"},
      {"defaults: x\nprofiles: []\n", "p.yaml line 1: defaults: unknown key"},
      {"profiles: []\n", "profiles: required: a list of at least one profile"},
      {"profiles:\n  - filters: [GpuModel]\n", "line 2: profiles[0].name: required"},
      {"profiles:\n  - name: a\n    filters: [GpuModel, Bogus]\n",
       "line 3: profiles.a.filters[1]: unknown filter plugin \"Bogus\" (known: GpuModel"},
      {"profiles:\n  - name: a\n    filters: [GpuModel, NodeReady]\n",
       "profiles.a: filters: FreeResources is required"},
      {"profiles:\n  - name: a\n" + good_filters + "    scorers:\n      - {name: Fast, weight: 1}\n",
       "line 5: profiles.a.scorers[0].name: unknown score plugin \"Fast\""},
      {"profiles:\n  - name: a\n" + good_filters + "    scorers:\n      - {name: Awake, weight: -1}\n",
       "profiles.a.scorers[0].weight: must be >= 0, got -1"},
      {"profiles:\n  - name: a\n" + good_filters + "    scorers:\n      - {name: Awake, weight: inf}\n",
       "profiles.a.scorers[0].weight: not a finite number"},
      {"profiles:\n  - name: a\n" + good_filters + "    scorers:\n      - {name: Awake, wieght: 1}\n",
       "profiles.a.scorers[0].wieght: unknown key"},
      {"profiles:\n  - name: a\n" + good_filters + "    percentage_of_nodes_to_score: 101\n",
       "line 4: profiles.a.percentage_of_nodes_to_score: must be in [0, 100], got 101"},
      {"profiles:\n  - name: a\n" + good_filters + "    min_feasible_nodes_to_score: many\n",
       "profiles.a.min_feasible_nodes_to_score: expected a whole number"},
      {"profiles:\n  - name: a\n" + good_filters + "  - name: a\n" + good_filters,
       "line 4: profiles[1].name: profile \"a\" is defined twice"},
      {"default_profile: b\nprofiles:\n  - name: a\n" + good_filters,
       "line 1: default_profile: no profile named \"b\" (defined: a)"},
      {"profiles:\n  - name: a\n    filters: [GpuModel, NodeReady, FreeResources, NodeReady]\n",
       "NodeReady is listed twice"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PlacementConfig> config = PlacementConfig::Parse(c.text, "p.yaml");
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(config.status().message(), HasSubstr(c.error)) << c.text;
  }
}

TEST(PlacementConfigTest, LoadNamesAMissingFile) {
  absl::StatusOr<PlacementConfig> config = PlacementConfig::Load("/nonexistent/placement.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/placement.yaml: cannot read"));
}

TEST(PlacementConfigTest, BuiltInProfilesAreValid) {
  PlacementConfig config = PlacementConfig::BuiltIn("first-fit");
  EXPECT_EQ(config.profiles.front().name, "first-fit");
  for (const PlacementProfile& profile : config.profiles) {
    EXPECT_TRUE(ValidateProfile(profile).ok()) << profile.name;
  }
}

}  // namespace
}  // namespace joule
