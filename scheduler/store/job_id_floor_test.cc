#include "scheduler/store/job_id_floor.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "scheduler/store/memory_store.h"

namespace joule {
namespace {

struct ScanCase {
  std::string name;
  std::string bytes;
  int64_t max;
};

class MaxJobNumberInTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(MaxJobNumberInTest, FindsTheLargestNumber) {
  EXPECT_EQ(MaxJobNumberIn(GetParam().bytes), GetParam().max);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MaxJobNumberInTest,
    ::testing::Values(
        ScanCase{"Empty", "", 0}, ScanCase{"NoId", "jobs/ job- job-x", 0},
        ScanCase{"Key", "jobs/job-42", 42},
        ScanCase{"LargestOfMany", "job-7 job-123-0 job-99", 123},
        ScanCase{"BinaryAround", std::string("\x00\x12job-15\x1a\x03", 10), 15},
        // A digit-valued byte after the id reads high, never low.
        ScanCase{"DigitAfter", "job-12" "8", 128},
        ScanCase{"EighteenDigits", "job-999999999999999999",
                 999999999999999999},
        ScanCase{"TooManyDigitsIsNoId", "job-1 job-1234567890123456789", 1},
        ScanCase{"Overlapping", "job-job-5", 5}),
    [](const ::testing::TestParamInfo<ScanCase>& info) {
      return info.param.name;
    });

TEST(JobIdFloorTest, ParsesDecimalNumbersOnly) {
  EXPECT_EQ(ParseJobIdFloor("0").value_or(-1), 0);
  EXPECT_EQ(ParseJobIdFloor("1234").value_or(-1), 1234);
  for (const char* bad : {"", "-1", "12a", " 12", "+5",
                          "1234567890123456789"}) {
    EXPECT_EQ(ParseJobIdFloor(bad).status().code(),
              absl::StatusCode::kDataLoss)
        << bad;
  }
}

TEST(JobIdFloorTest, ReadsTheStoredFloor) {
  MemoryStore store;
  EXPECT_EQ(ReadJobIdFloor(store).value_or(-1), 0);
  ASSERT_TRUE(store.Put(kJobIdFloorKey, "77").ok());
  EXPECT_EQ(ReadJobIdFloor(store).value_or(-1), 77);
  ASSERT_TRUE(store.Put(kJobIdFloorKey, "seventy").ok());
  EXPECT_EQ(ReadJobIdFloor(store).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace joule
