#include "agent/cpu/proc_stat.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/cpu/fixture_tree.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

constexpr char kModernStat[] =
    "cpu  10132153 290696 3084719 46828483 16683 0 25195 7 175628 11\n"
    "cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n"
    "intr 1462898 0 0 0 0 0 0 0 0 1\n"
    "ctxt 115315\n";

TEST(ParseProcStatTest, ParsesTheAggregateLine) {
  absl::StatusOr<CpuTimes> times = ParseProcStat(kModernStat, "/proc/stat");
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_EQ(times->user, 10132153u);
  EXPECT_EQ(times->nice, 290696u);
  EXPECT_EQ(times->system, 3084719u);
  EXPECT_EQ(times->idle, 46828483u);
  EXPECT_EQ(times->iowait, 16683u);
  EXPECT_EQ(times->irq, 0u);
  EXPECT_EQ(times->softirq, 25195u);
  EXPECT_EQ(times->steal, 7u);
  EXPECT_EQ(times->guest, 175628u);
  EXPECT_EQ(times->guest_nice, 11u);
  // guest and guest_nice are already inside user and nice.
  EXPECT_EQ(times->Busy(), 10132153u + 290696u + 3084719u + 25195u + 7u);
  EXPECT_EQ(times->Idle(), 46828483u + 16683u);
  EXPECT_EQ(times->Total(), times->Busy() + times->Idle());
}

TEST(ParseProcStatTest, OldKernelsHaveFewerFieldsAndNewOnesMayHaveMore) {
  absl::StatusOr<CpuTimes> old = ParseProcStat("cpu 10 20 30 40\n", "s");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->Busy(), 60u);
  EXPECT_EQ(old->Idle(), 40u);
  absl::StatusOr<CpuTimes> newer =
      ParseProcStat("cpu 1 2 3 4 5 6 7 8 9 10 11 12\n", "s");
  ASSERT_TRUE(newer.ok()) << newer.status();
  EXPECT_EQ(newer->Total(), 1u + 2 + 3 + 4 + 5 + 6 + 7 + 8);
  // No trailing newline, tabs as separators.
  EXPECT_TRUE(ParseProcStat("cpu\t1 2\t3 4", "s").ok());
}

TEST(ParseProcStatTest, GarbageIsDataLossNamingTheFileAndField) {
  struct Case {
    std::string contents;
    const char* expect;
  } cases[] = {
      {"", "not the aggregate"},
      {"\n", "not the aggregate"},
      {"cpu0 1 2 3 4\n", "not the aggregate"},
      {"intr 1 2 3\ncpu 1 2 3 4\n", "not the aggregate"},
      {"cpu 1 2 3\n", "3 fields"},
      {"cpu 1 2 abc 4\n", "field 3 (system)"},
      {"cpu 1 2 3 -5\n", "field 4 (idle)"},
      {"cpu 1 2 3 4 1180591620717411303424\n", "field 5 (iowait)"},
      {"cpu 1 2 3 4 5 6 7 12abc\n", "field 8 (steal)"},
      {"cpu 1 2 3 4 5 6 7 8 9 10 x\n", "field 11"},
      {"cpu 18446744073709551615 1 0 0\n", "overflow"},
      {"cpu " + std::string(2000, '1') + "\n", "longer than"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.contents.substr(0, 60));
    absl::StatusOr<CpuTimes> times = ParseProcStat(c.contents, "/x/stat");
    ASSERT_FALSE(times.ok());
    EXPECT_EQ(times.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(times.status().message(), "/x/stat"))
        << times.status();
    EXPECT_TRUE(absl::StrContains(times.status().message(), c.expect))
        << times.status();
  }
}

TEST(ReadProcStatTest, ReadsOnlyTheFirstLineOfALargeFile) {
  FixtureTree tree("procstat_large");
  // Real /proc/stat on a big machine is far larger than a sysfs page.
  std::string contents = kModernStat;
  for (int i = 0; i < 2000; ++i)
    absl::StrAppend(&contents, "cpu", i, " 1 2 3 4\n");
  tree.ProcStat(contents);
  absl::StatusOr<CpuTimes> times = ReadProcStat(tree.proc());
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_EQ(times->user, 10132153u);
}

TEST(ReadProcStatTest, FileErrorsNameTheFile) {
  FixtureTree tree("procstat_errors");
  absl::StatusOr<CpuTimes> missing = ReadProcStat(tree.proc());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), tree.proc()));
  tree.ProcStat("");
  absl::StatusOr<CpuTimes> empty = ReadProcStat(tree.proc());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(empty.status().message(), "proc/stat"));
  tree.ProcStat("garbage\n");
  EXPECT_EQ(ReadProcStat(tree.proc()).status().code(),
            absl::StatusCode::kDataLoss);
  tree.MakeDirectory("proc/stat");
  EXPECT_EQ(ReadProcStat(tree.proc()).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(CpuTimesBetweenTest, BusyShareBetweenReadings) {
  CpuTimes prev = *ParseProcStat("cpu 100 0 100 800 0 0 0 0 0 0\n", "s");
  CpuTimes cur = *ParseProcStat("cpu 250 0 150 900 0 0 0 0 50 0\n", "s");
  absl::StatusOr<CpuTimesDelta> delta = CpuTimesBetween(prev, cur);
  ASSERT_TRUE(delta.ok());
  EXPECT_EQ(delta->busy, 200u);
  EXPECT_EQ(delta->total, 300u);
  EXPECT_DOUBLE_EQ(delta->Utilization(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(CpuTimesBetween(cur, cur)->Utilization(), 0.0);
}

TEST(CpuTimesBetweenTest, IowaitGoingBackwardsIsNoIdleTime) {
  CpuTimes prev = *ParseProcStat("cpu 100 0 0 800 50 0 0 0\n", "s");
  CpuTimes cur = *ParseProcStat("cpu 200 0 0 810 30 0 0 0\n", "s");
  absl::StatusOr<CpuTimesDelta> delta = CpuTimesBetween(prev, cur);
  ASSERT_TRUE(delta.ok());
  EXPECT_EQ(delta->busy, 100u);
  EXPECT_EQ(delta->total, 100u);
  EXPECT_DOUBLE_EQ(delta->Utilization(), 1.0);
}

TEST(CpuTimesBetweenTest, BusyGoingBackwardsIsAnError) {
  CpuTimes prev = *ParseProcStat("cpu 200 0 0 800\n", "s");
  CpuTimes cur = *ParseProcStat("cpu 100 0 0 900\n", "s");
  EXPECT_EQ(CpuTimesBetween(prev, cur).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace joule
