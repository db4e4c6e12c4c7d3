#include "sim/trace/job_trace.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;

TEST(JobTraceTest, ParsesColumnsInAnyOrderAndSortsByArrival) {
  absl::StatusOr<std::vector<TraceJob>> jobs = ParseJobTrace(
      "# a synthetic mix\n"
      "gpus,arrival_s,duration_s,user\n"
      "1,60,600,alice\n"
      "\n"
      "4,0,3600.5,bob\n"
      "2,60,30,alice\n",
      "mix.csv");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 3);
  EXPECT_EQ((*jobs)[0].id, 1);
  EXPECT_EQ((*jobs)[0].gpus, 4);
  EXPECT_DOUBLE_EQ((*jobs)[0].duration_s, 3600.5);
  EXPECT_EQ((*jobs)[0].cluster, "bob");
  // Equal arrivals keep file order.
  EXPECT_EQ((*jobs)[1].id, 0);
  EXPECT_EQ((*jobs)[2].id, 2);
  absl::StatusOr<std::vector<TraceJob>> first =
      ParseJobTrace("arrival_s,duration_s,gpus\n5,1,1\n0,1,1\n", "t", 1);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1);
  EXPECT_EQ((*first)[0].arrival_s, 0);
}

TEST(JobTraceTest, RefusesBadInputNamingLineAndColumn) {
  const struct {
    std::string text;
    std::string want;
  } cases[] = {
      {"arrival_s,duration,gpus\n", "mix.csv:1: header: unknown column 'duration'"},
      {"arrival_s,gpus\n", "missing column 'duration_s'"},
      {"arrival_s,arrival_s,duration_s,gpus\n", "column 'arrival_s' twice"},
      {"arrival_s,duration_s,gpus\n1,2\n", "mix.csv:2: 2 fields, the header has 3"},
      {"arrival_s,duration_s,gpus\n-1,2,1\n", "mix.csv:2: arrival_s: expected a number >= 0"},
      {"arrival_s,duration_s,gpus\n1,0,1\n", "duration_s: expected a number > 0, got '0'"},
      {"arrival_s,duration_s,gpus\n1,nan,1\n", "duration_s: expected a number > 0"},
      {"arrival_s,duration_s,gpus\n1,2,0\n", "gpus: expected an integer >= 1, got '0'"},
      {"arrival_s,duration_s,gpus\n1,2,1.5\n", "gpus: expected an integer >= 1"},
      {"# only a comment\n", "mix.csv: no header"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<std::vector<TraceJob>> jobs = ParseJobTrace(c.text, "mix.csv");
    EXPECT_EQ(jobs.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(jobs.status().message(), HasSubstr(c.want)) << c.text;
  }
  EXPECT_EQ(LoadJobTrace("/nonexistent/trace.csv").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace joule::sim
