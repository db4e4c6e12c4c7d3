#include "tests/load/proc_stats.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(ParseProcStatusTest, ReadsThreadsAndRss) {
  const char* kStatus =
      "Name:\tjoule-scheduler\n"
      "VmPeak:\t  900000 kB\n"
      "VmRSS:\t   51234 kB\n"
      "Threads:\t17\n"
      "SigQ:\t0/127304\n";
  absl::StatusOr<ProcStats> stats = ParseProcStatus(kStatus);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->threads, 17);
  EXPECT_EQ(stats->rss_kib, 51234);
}

TEST(ParseProcStatusTest, MissingOrMalformedFieldsAreErrors) {
  EXPECT_EQ(ParseProcStatus("VmRSS:\t1 kB\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStatus("Threads:\t4\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStatus("Threads:\tmany\nVmRSS:\t1 kB\n").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadProcStatsTest, ReadsThisProcess) {
  absl::StatusOr<ProcStats> stats = ReadProcStats(getpid());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->threads, 1);
  EXPECT_GT(stats->rss_kib, 0);
  EXPECT_GE(stats->fds, 3);  // stdin, stdout, stderr at least.
  EXPECT_GE(stats->cpu_seconds, 0);
}

TEST(ReadProcStatsTest, MissingProcessIsNotFound) {
  EXPECT_EQ(ReadProcStats(getpid(), "/nonexistent-proc").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace joule
