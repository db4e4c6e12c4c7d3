#include "scheduler/carbon.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Time Utc(int year, int month, int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilMinute(year, month, day, hour, minute),
                         absl::UTCTimeZone());
}

// ---- IntensitySeries ----

TEST(IntensitySeriesTest, ConstantIsTheSameAtEveryTime) {
  const IntensitySeries series = IntensitySeries::Constant(45);
  EXPECT_EQ(series.At(absl::InfinitePast()), 45);
  EXPECT_EQ(series.At(Utc(2024, 1, 1, 0)), 45);
  EXPECT_EQ(series.At(absl::InfiniteFuture()), 45);
}

TEST(IntensitySeriesTest, ValueInForceIsTheLastRowAtOrBefore) {
  // RFC 3339 with Z and with an offset, Unix seconds, a header, comments.
  const std::string csv =
      "# WattTime-style export\n"
      "time,g_per_kwh\n"
      "2024-05-01T00:00:00Z,300\n"
      "\n"
      "2024-05-01T02:00:00+01:00, 250   # = 01:00 UTC\n"
      "1714528800,200\r\n";  // 2024-05-01T02:00:00Z
  absl::StatusOr<IntensitySeries> series = IntensitySeries::ParseCsv(csv, "us-east.csv");
  ASSERT_TRUE(series.ok()) << series.status();
  EXPECT_EQ(series->size(), 3u);
  // Before the first row: the first row's value.
  EXPECT_EQ(series->At(Utc(2024, 4, 30, 12)), 300);
  EXPECT_EQ(series->At(Utc(2024, 5, 1, 0)), 300);
  EXPECT_EQ(series->At(Utc(2024, 5, 1, 0, 59)), 300);
  EXPECT_EQ(series->At(Utc(2024, 5, 1, 1)), 250);
  EXPECT_EQ(series->At(Utc(2024, 5, 1, 1, 30)), 250);
  EXPECT_EQ(series->At(Utc(2024, 5, 1, 2)), 200);
  EXPECT_EQ(series->At(Utc(2030, 1, 1, 0)), 200);
}

TEST(IntensitySeriesTest, EveryErrorNamesFileLineAndField) {
  struct Case {
    std::string csv;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"2024-05-01T00:00:00Z,300\n2024-05-01T01:00:00Z,290\n"
       "2024-05-01T02:00:00Z,280\n2024-05-01T03:00:00Z,abc\n",
       "us-east.csv line 4: intensity: not a number: \"abc\""},
      {"2024-05-01T00:00:00Z,-3\n", "us-east.csv line 1: intensity: must be >= 0, got -3"},
      {"2024-05-01T00:00:00Z,nan\n", "us-east.csv line 1: intensity: not a finite number"},
      {"2024-05-01T00:00:00Z,inf\n", "us-east.csv line 1: intensity: not a finite number"},
      {"2024-05-01T00:00:00Z,\n", "us-east.csv line 1: intensity: not a number: \"\""},
      {"yesterday,300\n", "us-east.csv line 1: time: not RFC 3339 or Unix seconds: \"yesterday\""},
      {"2024-05-01T00:00:00Z,300\n2024-13-01T00:00:00Z,300\n",
       "us-east.csv line 2: time: not RFC 3339 or Unix seconds"},
      // A header is only allowed before the first row.
      {"2024-05-01T00:00:00Z,300\ntime,g_per_kwh\n",
       "us-east.csv line 2: time: not RFC 3339 or Unix seconds: \"time\""},
      {"2024-05-01T00:00:00Z,300,extra\n",
       "us-east.csv line 1: row: want TIME,G_PER_KWH, got 3 fields"},
      {"300\n", "us-east.csv line 1: row: want TIME,G_PER_KWH, got 1 fields"},
      {"2024-05-01T01:00:00Z,300\n# gap\n2024-05-01T00:00:00Z,290\n",
       "us-east.csv line 3: time: \"2024-05-01T00:00:00Z\" is not after line 1's time"},
      {"1714521600,300\n1714521600,290\n", "us-east.csv line 2: time: \"1714521600\" is not after"},
      {"", "us-east.csv: no rows"},
      {"# only a comment\ntime,g\n", "us-east.csv: no rows"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<IntensitySeries> series = IntensitySeries::ParseCsv(c.csv, "us-east.csv");
    ASSERT_FALSE(series.ok()) << c.csv;
    EXPECT_EQ(series.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(series.status().message()), HasSubstr(c.message)) << c.csv;
  }
}

// ---- CarbonConfig ----

class CarbonConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = ::testing::TempDir() + "/carbon_test_XXXXXX";
    ASSERT_NE(mkdtemp(path.data()), nullptr) << std::strerror(errno);
    dir_ = path;
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  // Parses `yaml` with intensity files relative to the test's directory.
  absl::StatusOr<CarbonConfig> Parse(const std::string& yaml) {
    return CarbonConfig::Parse(yaml, "carbon.yaml", dir_);
  }

  std::string dir_;
};

TEST_F(CarbonConfigTest, NotConfiguredIsZeroEverywhere) {
  const CarbonConfig config;
  EXPECT_FALSE(config.configured());
  EXPECT_EQ(config.currency(), "");
  EXPECT_EQ(config.IntensityGPerKwh("eu-north", Utc(2024, 1, 1, 0)), 0);
  EXPECT_EQ(config.PricePerKwh(""), 0);
}

TEST_F(CarbonConfigTest, LoadsRegionsDefaultAndTimeSeries) {
  Write("us-east.csv",
        "time,g_per_kwh\n2024-05-01T00:00:00Z,380\n2024-05-01T12:00:00Z,420\n");
  const std::string path = Write("carbon.yaml", R"(
currency: EUR
default:
  intensity_g_per_kwh: 400
  price_per_kwh: 0.15
regions:
  eu-north:
    intensity_g_per_kwh: 45
    price_per_kwh: 0.08
  us-east:
    intensity_file: us-east.csv   # relative to this file
    price_per_kwh: 0.12
)");
  absl::StatusOr<CarbonConfig> config = CarbonConfig::Load(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->configured());
  EXPECT_EQ(config->currency(), "EUR");
  EXPECT_THAT(config->Regions(), ElementsAre("eu-north", "us-east"));
  const absl::Time morning = Utc(2024, 5, 1, 6);
  const absl::Time evening = Utc(2024, 5, 1, 18);
  EXPECT_EQ(config->IntensityGPerKwh("eu-north", morning), 45);
  EXPECT_EQ(config->PricePerKwh("eu-north"), 0.08);
  EXPECT_EQ(config->IntensityGPerKwh("us-east", morning), 380);
  EXPECT_EQ(config->IntensityGPerKwh("us-east", evening), 420);
  EXPECT_EQ(config->PricePerKwh("us-east"), 0.12);
  // No region, or one not listed: the default.
  EXPECT_EQ(config->IntensityGPerKwh("", morning), 400);
  EXPECT_EQ(config->IntensityGPerKwh("ap-south", morning), 400);
  EXPECT_EQ(config->PricePerKwh("ap-south"), 0.15);
}

TEST_F(CarbonConfigTest, CurrencyDefaultsToUsdAndRegionsAreOptional) {
  absl::StatusOr<CarbonConfig> config =
      Parse("default: {intensity_g_per_kwh: 400, price_per_kwh: 0.15}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->currency(), "USD");
  EXPECT_TRUE(config->Regions().empty());
  EXPECT_EQ(config->IntensityGPerKwh("x", absl::Now()), 400);
}

TEST_F(CarbonConfigTest, EveryErrorNamesTheFileLineAndField) {
  Write("bad.csv", "2024-05-01T00:00:00Z,300\n2024-05-01T01:00:00Z,abc\n");
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::string ok_default = "default: {intensity_g_per_kwh: 400, price_per_kwh: 0.15}\n";
  const std::vector<Case> cases = {
      {"", "carbon.yaml: document: expected a mapping"},
      {"- a\n- b\n", "carbon.yaml line 1: document: expected a mapping"},
      {"default: [1, 2\n", "carbon.yaml line"},  // Malformed YAML.
      {"regions: {}\n", "carbon.yaml line 1: default: required"},
      {ok_default + "region: {}\n", "carbon.yaml line 2: region: unknown key"},
      {ok_default + "currency: \"US D\"\n", "carbon.yaml line 2: currency: expected a currency"},
      {ok_default + "currency: [USD]\n", "carbon.yaml line 2: currency: expected a currency"},
      {"default: 400\n", "carbon.yaml line 1: default: expected a mapping"},
      {"default: {price_per_kwh: 0.15}\n",
       "carbon.yaml line 1: default: give exactly one of intensity_g_per_kwh and "
       "intensity_file"},
      {"default: {intensity_g_per_kwh: 1, intensity_file: a.csv, price_per_kwh: 0.15}\n",
       "default: give exactly one"},
      {"default: {intensity_g_per_kwh: 400}\n",
       "carbon.yaml line 1: default.price_per_kwh: required"},
      {"default:\n  intensity_g_per_kwh: abc\n  price_per_kwh: 0.15\n",
       "carbon.yaml line 2: default.intensity_g_per_kwh: not a number: \"abc\""},
      {"default:\n  intensity_g_per_kwh: -1\n  price_per_kwh: 0.15\n",
       "carbon.yaml line 2: default.intensity_g_per_kwh: must be >= 0, got -1"},
      {"default:\n  intensity_g_per_kwh: 400\n  price_per_kwh: -0.1\n",
       "carbon.yaml line 3: default.price_per_kwh: must be >= 0"},
      {"default:\n  intensity_g_per_kwh: 400\n  price_per_kwh: [1]\n",
       "carbon.yaml line 3: default.price_per_kwh: expected a number"},
      {"default:\n  intensity_g_per_kwh: 400\n  price: 0.15\n",
       "carbon.yaml line 3: default.price: unknown key"},
      {ok_default + "regions: [eu-north]\n",
       "carbon.yaml line 2: regions: expected a mapping"},
      {ok_default + "regions:\n  eu-north:\n    intensity_g_per_kwh: 45\n",
       "carbon.yaml line 4: regions.eu-north.price_per_kwh: required"},
      {ok_default +
           "regions:\n  eu-north:\n    intensity_g_per_kwh: 45\n    price_per_kwh: x\n",
       "carbon.yaml line 5: regions.eu-north.price_per_kwh: not a number: \"x\""},
      {ok_default + "regions:\n  us-east:\n    intensity_file: missing.csv\n"
                    "    price_per_kwh: 0.12\n",
       "carbon.yaml line 4: regions.us-east.intensity_file: "},
      {ok_default + "regions:\n  us-east:\n    intensity_file: [a]\n    price_per_kwh: 0.1\n",
       "carbon.yaml line 4: regions.us-east.intensity_file: expected a file name"},
      // A bad row in an intensity file names that file and its line.
      {ok_default + "regions:\n  us-east:\n    intensity_file: bad.csv\n"
                    "    price_per_kwh: 0.12\n",
       "bad.csv line 2: intensity: not a number: \"abc\""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<CarbonConfig> config = Parse(c.yaml);
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.message)) << c.yaml;
  }
  // A file that cannot be read names it.
  absl::StatusOr<CarbonConfig> missing = CarbonConfig::Load(dir_ + "/nope.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.yaml: cannot read"));
}

}  // namespace
}  // namespace joule
