#ifndef JOULE_SCHEDULER_CARBON_H_
#define JOULE_SCHEDULER_CARBON_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace joule {

// The node label that names a node's grid region (agents pass it with
// `--label=joule.dev/region=eu-north`).
inline constexpr char kRegionLabel[] = "joule.dev/region";

// Joules per kilowatt-hour (1 kWh = 1000 W x 3600 s).
inline constexpr double kJoulesPerKwh = 3.6e6;

// A grid's carbon intensity over time, in gCO2e per kWh: a constant, or a
// piecewise-constant series from a CSV file whose rows say from when a value
// is in force. Immutable once built; thread-compatible.
class IntensitySeries {
 public:
  // A series that is `g_per_kwh` at every time.
  static IntensitySeries Constant(double g_per_kwh);

  // Parses CSV lines `TIME,G_PER_KWH`, TIME in RFC 3339 (e.g.
  // 2024-05-01T12:00:00Z) or Unix seconds, sorted by time (strictly
  // increasing). Blank lines and '#' comments are skipped, and so is a
  // header line before the first row (one whose fields are neither a time
  // nor a number). An error names `file_name`, the line and the field, e.g.
  // `us-east.csv line 4: intensity: not a number: "abc"`; negative values
  // are refused, and so is a file without rows.
  static absl::StatusOr<IntensitySeries> ParseCsv(absl::string_view text,
                                                  absl::string_view file_name);

  // The value in force at `t`: the last row at or before `t`; before the
  // first row, the first row's value.
  double At(absl::Time t) const;

  // Rows (1 for a constant).
  size_t size() const { return points_.size(); }

 private:
  struct Point {
    absl::Time from;
    double g_per_kwh;
  };
  explicit IntensitySeries(std::vector<Point> points) : points_(std::move(points)) {}

  // Sorted by `from`, strictly increasing, never empty.
  std::vector<Point> points_;
};

// What a kWh costs in one region: its carbon intensity and its price.
struct RegionRates {
  IntensitySeries intensity = IntensitySeries::Constant(0);
  double price_per_kwh = 0;
};

// Carbon intensity and electricity price per grid region, from the YAML file
// of --carbon-config:
//
//   currency: USD                 # optional, default USD
//   default:                      # required: nodes without a region, or
//     intensity_g_per_kwh: 400    #   in regions not listed
//     price_per_kwh: 0.15
//   regions:                      # optional
//     eu-north:
//       intensity_g_per_kwh: 45
//       price_per_kwh: 0.08
//     us-east:
//       intensity_file: us-east.csv   # relative to the YAML file's directory
//       price_per_kwh: 0.12
//
// Each entry gives exactly one of intensity_g_per_kwh (a constant) and
// intensity_file (an IntensitySeries CSV), and price_per_kwh; values must be
// finite and >= 0; unknown keys are refused (they are usually typos).
//
// A default-constructed config is "not configured": every region is 0
// gCO2e/kWh at price 0, and configured() says so.
//
// Immutable once built; thread-compatible (the scheduler only reads it).
class CarbonConfig {
 public:
  CarbonConfig() = default;

  // Parses the YAML `text`. `source` names it in errors (errors read
  // "SOURCE line N: FIELD: problem"); intensity files are read relative to
  // `base_dir` ("" = the working directory) unless absolute.
  static absl::StatusOr<CarbonConfig> Parse(absl::string_view text,
                                            const std::string& source,
                                            const std::string& base_dir);

  // Reads and parses the file at `path` (intensity files relative to its
  // directory).
  static absl::StatusOr<CarbonConfig> Load(const std::string& path);

  bool configured() const { return configured_; }
  // The currency prices are in; empty when not configured.
  const std::string& currency() const { return currency_; }

  // gCO2e per kWh in `region` ("" = no region) at `t`.
  double IntensityGPerKwh(absl::string_view region, absl::Time t) const;
  // Price of a kWh in `region`, in currency().
  double PricePerKwh(absl::string_view region) const;

  // The regions listed (not the default), sorted.
  std::vector<std::string> Regions() const;

 private:
  const RegionRates& RatesOf(absl::string_view region) const;

  bool configured_ = false;
  std::string currency_;
  RegionRates default_;
  std::map<std::string, RegionRates, std::less<>> regions_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_CARBON_H_
