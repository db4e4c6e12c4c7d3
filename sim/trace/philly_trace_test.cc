#include "sim/trace/philly_trace.h"

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;

constexpr char kHeader[] = "timestamp,duration,num_gpus,gpu_time,cluster\n";

std::string WriteFixture(const std::string& name, const std::string& body) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream out(path);
  out << body;
  return path;
}

TEST(PhillyTraceTest, SortsByArrivalStableAndOffsetsFromEarliest) {
  const std::string path = WriteFixture(
      "sorted.csv", std::string(kHeader) +
                        "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
                        "2017-10-09 06:13:03,2951.0,2,5902.0,6214e9\n"
                        "2017-10-09 07:01:55,10.5,4,42.0,aaaaaa\n"
                        "2017-10-10 06:13:03,1.0,1,1.0,bbbbbb\n"
                        "\n");
  absl::StatusOr<std::vector<TraceJob>> jobs = LoadPhillyTrace(path);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 4u);
  EXPECT_EQ((*jobs)[0].id, 1);
  EXPECT_DOUBLE_EQ((*jobs)[0].arrival_s, 0.0);
  EXPECT_DOUBLE_EQ((*jobs)[0].duration_s, 2951.0);
  EXPECT_EQ((*jobs)[0].gpus, 2);
  EXPECT_EQ((*jobs)[0].cluster, "6214e9");
  // Two jobs at 07:01:55 keep file order.
  EXPECT_EQ((*jobs)[1].id, 0);
  EXPECT_EQ((*jobs)[2].id, 2);
  EXPECT_DOUBLE_EQ((*jobs)[1].arrival_s, 48 * 60 + 52);
  EXPECT_DOUBLE_EQ((*jobs)[2].arrival_s, 48 * 60 + 52);
  EXPECT_DOUBLE_EQ((*jobs)[2].duration_s, 10.5);
  EXPECT_EQ((*jobs)[3].id, 3);
  EXPECT_DOUBLE_EQ((*jobs)[3].arrival_s, 86400.0);
}

TEST(PhillyTraceTest, LimitKeepsEarliestArrivals) {
  const std::string path =
      WriteFixture("limit.csv", std::string(kHeader) +
                                    "2017-10-09 00:00:03,5,1,5,a\n"
                                    "2017-10-09 00:00:01,5,1,5,b\n"
                                    "2017-10-09 00:00:02,5,1,5,c\n");
  absl::StatusOr<std::vector<TraceJob>> jobs = LoadPhillyTrace(path, 2);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].cluster, "b");
  EXPECT_EQ((*jobs)[1].cluster, "c");
  EXPECT_DOUBLE_EQ((*jobs)[1].arrival_s, 1.0);

  jobs = LoadPhillyTrace(path, 10);
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 3u);
}

TEST(PhillyTraceTest, TimestampsAreUtcCivilTime) {
  EXPECT_EQ(*ParsePhillyTimestamp("1970-01-01 00:00:00"), 0);
  EXPECT_EQ(*ParsePhillyTimestamp("2017-10-09 07:01:55"), 1507532515);
  EXPECT_EQ(*ParsePhillyTimestamp("2016-02-29 00:00:00"), 1456704000);
  EXPECT_FALSE(ParsePhillyTimestamp("2017-02-29 00:00:00").ok());
  EXPECT_FALSE(ParsePhillyTimestamp("2017-10-09 24:00:00").ok());
  EXPECT_FALSE(ParsePhillyTimestamp("2017-10-09T07:01:55").ok());
  EXPECT_FALSE(ParsePhillyTimestamp("2017-1-09 07:01:55").ok());
  EXPECT_FALSE(ParsePhillyTimestamp("").ok());
}

struct BadRowCase {
  const char* name;
  const char* row;
  const char* expected;
};

TEST(PhillyTraceTest, BadRowsNameFileLineAndColumn) {
  const BadRowCase cases[] = {
      {"bad_ts", "2017-13-09 07:01:55,66.0,1,66.0,x",
       ":3: column 1 (timestamp)"},
      {"zero_dur", "2017-10-09 07:01:55,0,1,0,x", ":3: column 2 (duration)"},
      {"neg_dur", "2017-10-09 07:01:55,-5,1,-5,x", ":3: column 2 (duration)"},
      {"nan_dur", "2017-10-09 07:01:55,nan,1,1,x", ":3: column 2 (duration)"},
      {"text_dur", "2017-10-09 07:01:55,abc,1,1,x", ":3: column 2 (duration)"},
      {"zero_gpus", "2017-10-09 07:01:55,5,0,0,x", ":3: column 3 (num_gpus)"},
      {"frac_gpus", "2017-10-09 07:01:55,5,1.5,5,x", ":3: column 3 (num_gpus)"},
      {"bad_gpu_time", "2017-10-09 07:01:55,5,1,?,x",
       ":3: column 4 (gpu_time)"},
      {"no_cluster", "2017-10-09 07:01:55,5,1,5,", ":3: column 5 (cluster)"},
      {"few_fields", "2017-10-09 07:01:55,5,1", ":3: expected 5"},
  };
  for (const BadRowCase& c : cases) {
    const std::string path = WriteFixture(
        std::string(c.name) + ".csv",
        std::string(kHeader) + "2017-10-09 07:01:55,1,1,1,ok\n" + c.row + "\n");
    absl::StatusOr<std::vector<TraceJob>> jobs = LoadPhillyTrace(path);
    ASSERT_FALSE(jobs.ok()) << c.name;
    EXPECT_EQ(jobs.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(std::string(jobs.status().message()),
                HasSubstr(path + c.expected))
        << c.name << ": " << jobs.status();
  }
}

TEST(PhillyTraceTest, BadHeaderAndMissingFile) {
  const std::string path = WriteFixture("header.csv", "a,b,c\n");
  absl::StatusOr<std::vector<TraceJob>> jobs = LoadPhillyTrace(path);
  ASSERT_FALSE(jobs.ok());
  EXPECT_EQ(jobs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(jobs.status().message()), HasSubstr(path + ":1:"));

  jobs = LoadPhillyTrace(WriteFixture("empty.csv", ""));
  EXPECT_EQ(jobs.status().code(), absl::StatusCode::kInvalidArgument);

  jobs = LoadPhillyTrace(::testing::TempDir() + "/does_not_exist.csv");
  EXPECT_EQ(jobs.status().code(), absl::StatusCode::kNotFound);
}

TEST(PhillyTraceTest, HeaderOnlyGivesNoJobs) {
  absl::StatusOr<std::vector<TraceJob>> jobs =
      LoadPhillyTrace(WriteFixture("header_only.csv", kHeader));
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_TRUE(jobs->empty());
}

}  // namespace
}  // namespace joule::sim
