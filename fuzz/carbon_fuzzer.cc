// Fuzz target: the carbon configuration (scheduler/carbon.h): the YAML file
// of --carbon-config and the intensity CSV files it names.
//
// Input: YAML, optionally followed by a line "%%" and CSV text. The CSV is
// parsed on its own (IntensitySeries::ParseCsv) and is also the file
// "a.csv" of a fresh directory the YAML is parsed against, so an entry
// `intensity_file: a.csv` reads it. Without "%%" the whole input is tried
// as both.
//
// Checked, besides never crashing: what parses gives finite, non-negative
// intensities and prices at any time, in every region and outside them.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_support.h"
#include "scheduler/carbon.h"

namespace joule::fuzz {
namespace {

const absl::Time* ProbeTimes() {
  static const absl::Time times[] = {
      absl::InfinitePast(),
      absl::FromUnixSeconds(-1),
      absl::UnixEpoch(),
      absl::FromUnixSeconds(1714564800),  // 2024-05-01T12:00:00Z
      absl::FromUnixSeconds(4102444800),  // 2100-01-01
      absl::InfiniteFuture(),
  };
  return times;
}
constexpr int kProbeTimes = 6;

bool Sane(double value) { return std::isfinite(value) && value >= 0; }

void CheckSeries(const IntensitySeries& series) {
  FUZZ_CHECK(series.size() >= 1);
  for (int i = 0; i < kProbeTimes; ++i) FUZZ_CHECK(Sane(series.At(ProbeTimes()[i])));
}

void CheckConfig(const CarbonConfig& config) {
  std::vector<std::string> regions = config.Regions();
  regions.push_back("");
  regions.push_back("no-such-region");
  for (const std::string& region : regions) {
    FUZZ_CHECK(Sane(config.PricePerKwh(region)));
    for (int i = 0; i < kProbeTimes; ++i) {
      FUZZ_CHECK(Sane(config.IntensityGPerKwh(region, ProbeTimes()[i])));
    }
  }
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule::fuzz;  // NOLINT: a fuzz target's one function.
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::string_view yaml = text;
  absl::string_view csv = text;
  const size_t split = text.find("\n%%\n");
  if (split != absl::string_view::npos) {
    yaml = text.substr(0, split + 1);
    csv = text.substr(split + 4);
  }

  absl::StatusOr<joule::IntensitySeries> series =
      joule::IntensitySeries::ParseCsv(csv, "a.csv");
  if (series.ok()) CheckSeries(*series);

  const std::string dir = FreshDir();
  WriteFileOrDie(dir + "/a.csv", csv);
  absl::StatusOr<joule::CarbonConfig> config =
      joule::CarbonConfig::Parse(yaml, "carbon.yaml", dir);
  if (config.ok()) CheckConfig(*config);
  RemoveTree(dir);
  return 0;
}
