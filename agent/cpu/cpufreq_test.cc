#include "agent/cpu/cpufreq.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "agent/cpu/fixture_tree.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

constexpr char kPolicy0[] = "sys/devices/system/cpu/cpufreq/policy0";
constexpr char kPolicy2[] = "sys/devices/system/cpu/cpufreq/policy2";

void TwoPolicies(FixtureTree& tree) {
  tree.Cpufreq(0, 800000, 3500000, 1200000, 800000, 3500000, "0 1")
      .Cpufreq(2, 1000000, 3000000, 2900000, 1000000, 3000000, "2 3")
      .File("sys/devices/system/cpu/cpufreq/boost", "1\n");
}

TEST(CpufreqControlTest, DiscoversPolicies) {
  FixtureTree tree("cpufreq_discover");
  TwoPolicies(tree);
  absl::StatusOr<CpufreqControl> control = CpufreqControl::Discover(tree.sys());
  ASSERT_TRUE(control.ok()) << control.status();
  ASSERT_EQ(control->policies().size(), 2u);
  const CpufreqPolicy& p0 = control->policies()[0];
  EXPECT_EQ(p0.id, 0);
  EXPECT_EQ(p0.cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(p0.cpuinfo_min_khz, 800000u);
  EXPECT_EQ(p0.cpuinfo_max_khz, 3500000u);
  EXPECT_EQ(control->policies()[1].id, 2);
  EXPECT_EQ(control->policies()[1].cpus, (std::vector<int>{2, 3}));
}

TEST(CpufreqControlTest, AbsentCpufreqIsNoPolicies) {
  FixtureTree tree("cpufreq_absent");
  absl::StatusOr<CpufreqControl> control = CpufreqControl::Discover(tree.sys());
  ASSERT_TRUE(control.ok());
  EXPECT_TRUE(control->policies().empty());
  EXPECT_EQ(control->Read(0).status().code(), absl::StatusCode::kNotFound);
}

TEST(CpufreqControlTest, ReadsFrequencies) {
  FixtureTree tree("cpufreq_read");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  absl::StatusOr<CpufreqState> state = control.Read(2);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->scaling_min_khz, 1000000u);
  EXPECT_EQ(state->scaling_max_khz, 3000000u);
  EXPECT_EQ(state->scaling_cur_khz, 2900000u);
  EXPECT_EQ(state->cpuinfo_min_khz, 1000000u);
  EXPECT_EQ(state->cpuinfo_max_khz, 3000000u);
}

TEST(CpufreqControlTest, GarbageFrequencyIsAnErrorNamingTheFile) {
  FixtureTree tree("cpufreq_garbage");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  const std::string file = std::string(kPolicy0) + "/scaling_cur_freq";
  for (const char* garbage :
       {"", "abc", "-5", "1180591620717411303424", "12abc"}) {
    SCOPED_TRACE(garbage);
    tree.File(file, garbage);
    absl::StatusOr<CpufreqState> state = control.Read(0);
    EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(state.status().message(), tree.Path(file)))
        << state.status();
  }
  tree.Remove(file);
  EXPECT_EQ(control.Read(0).status().code(), absl::StatusCode::kNotFound);
  // The other policy is unaffected.
  EXPECT_TRUE(control.Read(2).ok());
}

TEST(CpufreqControlTest, UndescribablePoliciesAreSkippedAndNamed) {
  FixtureTree tree("cpufreq_skip");
  TwoPolicies(tree);
  tree.File(std::string(kPolicy0) + "/cpuinfo_max_freq", "-5\n")
      .File(std::string(kPolicy2) + "/affected_cpus", "2 x\n")
      .Cpufreq(4, 1, 1, 1, 5, 4, "4")                             // min > max
      .Cpufreq(6, 800000, 3500000, 800000, 800000, 3500000, "");  // Offline.
  std::vector<absl::Status> skipped;
  absl::StatusOr<CpufreqControl> control =
      CpufreqControl::Discover(tree.sys(), &skipped);
  ASSERT_TRUE(control.ok());
  ASSERT_EQ(control->policies().size(), 1u);
  EXPECT_EQ(control->policies()[0].id, 6);
  EXPECT_TRUE(control->policies()[0].cpus.empty());
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_TRUE(
      absl::StrContains(skipped[0].message(), "policy0/cpuinfo_max_freq"))
      << skipped[0];
  EXPECT_TRUE(absl::StrContains(skipped[1].message(), "policy2/affected_cpus"))
      << skipped[1];
  EXPECT_TRUE(absl::StrContains(skipped[2].message(), "policy4")) << skipped[2];
  for (const absl::Status& s : skipped) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
}

TEST(CpufreqControlTest, SetWithinRangeAndRestore) {
  FixtureTree tree("cpufreq_set");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  const std::string max0 = std::string(kPolicy0) + "/scaling_max_freq";
  const std::string max2 = std::string(kPolicy2) + "/scaling_max_freq";
  ASSERT_TRUE(control.SetMaxFrequency(0, 2000000).ok());
  EXPECT_EQ(tree.Contents(max0), "2000000\n");
  EXPECT_EQ(control.Read(0)->scaling_max_khz, 2000000u);
  // The range ends are allowed; a second change keeps the first original.
  ASSERT_TRUE(control.SetMaxFrequency(0, 800000).ok());
  ASSERT_TRUE(control.SetMaxFrequency(2, 3000000).ok());
  EXPECT_TRUE(control.HasChangedLimits());
  ASSERT_TRUE(control.Restore().ok());
  EXPECT_EQ(tree.Contents(max0), "3500000\n");
  EXPECT_EQ(tree.Contents(max2), "3000000\n");
  EXPECT_FALSE(control.HasChangedLimits());
}

TEST(CpufreqControlTest, OutOfRangeNamesTheRangeAndWritesNothing) {
  FixtureTree tree("cpufreq_range");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  const std::string max0 = std::string(kPolicy0) + "/scaling_max_freq";
  for (uint64_t khz : {uint64_t{799999}, uint64_t{3500001}, uint64_t{0}}) {
    absl::Status status = control.SetMaxFrequency(0, khz);
    EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << khz;
    EXPECT_TRUE(absl::StrContains(status.message(), "[800000, 3500000] kHz"))
        << status;
  }
  EXPECT_EQ(tree.Contents(max0), "3500000\n");
  EXPECT_FALSE(control.HasChangedLimits());
  EXPECT_EQ(control.SetMaxFrequency(9, 1000000).code(),
            absl::StatusCode::kNotFound);
}

TEST(CpufreqControlTest, UnreadableOriginalIsNotOverwritten) {
  FixtureTree tree("cpufreq_bad_original");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  const std::string max0 = std::string(kPolicy0) + "/scaling_max_freq";
  tree.File(max0, "12abc\n");
  absl::Status status = control.SetMaxFrequency(0, 2000000);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(status.message(), "scaling_max_freq"));
  EXPECT_EQ(tree.Contents(max0), "12abc\n");
  EXPECT_FALSE(control.HasChangedLimits());
}

TEST(CpufreqControlTest, FailedRestoreIsKeptForRetry) {
  FixtureTree tree("cpufreq_restore_retry");
  TwoPolicies(tree);
  CpufreqControl control = *CpufreqControl::Discover(tree.sys());
  const std::string max0 = std::string(kPolicy0) + "/scaling_max_freq";
  ASSERT_TRUE(control.SetMaxFrequency(0, 2000000).ok());
  tree.MakeDirectory(max0);
  absl::Status status = control.Restore();
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "policy0/scaling_max_freq"))
      << status;
  EXPECT_TRUE(control.HasChangedLimits());
  tree.Remove(max0).File(max0, "2000000\n");
  ASSERT_TRUE(control.Restore().ok());
  EXPECT_EQ(tree.Contents(max0), "3500000\n");
}

TEST(ParseCpuListTest, ParsesAndRejects) {
  EXPECT_EQ(*ParseCpuList("0 1 2 3", "f"), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(*ParseCpuList("5", "f"), (std::vector<int>{5}));
  EXPECT_TRUE(ParseCpuList("", "f")->empty());
  for (const char* bad : {"0-3", "a", "-1", "1,2", "1 2x"}) {
    absl::StatusOr<std::vector<int>> cpus = ParseCpuList(bad, "file");
    EXPECT_EQ(cpus.status().code(), absl::StatusCode::kDataLoss) << bad;
    EXPECT_TRUE(absl::StrContains(cpus.status().message(), "file"));
  }
}

}  // namespace
}  // namespace joule
