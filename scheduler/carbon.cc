#include "scheduler/carbon.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/yaml_errors.h"
#include "yaml-cpp/yaml.h"

namespace joule {
namespace {

constexpr size_t kMaxCurrencyBytes = 16;

// RFC 3339, or Unix seconds (a plain number).
bool ParseCsvTime(absl::string_view text, absl::Time* t) {
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    if (!std::isfinite(seconds)) return false;
    *t = absl::UnixEpoch() + absl::Seconds(seconds);
    return true;
  }
  std::string error;
  return absl::ParseTime(absl::RFC3339_full, std::string(text), t, &error);
}

std::string JoinPath(const std::string& dir, const std::string& path) {
  if (dir.empty() || (!path.empty() && path[0] == '/')) return path;
  return absl::StrCat(dir, dir.back() == '/' ? "" : "/", path);
}

// One `default:` or `regions.NAME:` entry.
absl::StatusOr<RegionRates> ParseRates(const YamlErrors& errors, const YAML::Node& node,
                                       const std::string& field,
                                       const std::string& base_dir) {
  if (!node.IsMap()) {
    return errors.At(node, field,
                     "expected a mapping with intensity_g_per_kwh or intensity_file, "
                     "and price_per_kwh");
  }
  const std::string prefix = absl::StrCat(field, ".");
  absl::Status keys = errors.CheckKeys(
      node, prefix, {"intensity_g_per_kwh", "intensity_file", "price_per_kwh"});
  if (!keys.ok()) return keys;
  RegionRates rates;
  const YAML::Node constant = node["intensity_g_per_kwh"];
  const YAML::Node file = node["intensity_file"];
  if (constant.IsDefined() == file.IsDefined()) {
    return errors.At(node, field,
                     "give exactly one of intensity_g_per_kwh and intensity_file");
  }
  if (constant.IsDefined()) {
    absl::StatusOr<double> value =
        errors.NonNegative(constant, absl::StrCat(prefix, "intensity_g_per_kwh"));
    if (!value.ok()) return value.status();
    rates.intensity = IntensitySeries::Constant(*value);
  } else {
    if (!file.IsScalar() || file.Scalar().empty()) {
      return errors.At(file, absl::StrCat(prefix, "intensity_file"),
                       "expected a file name");
    }
    absl::StatusOr<std::string> text = ReadConfigFile(JoinPath(base_dir, file.Scalar()));
    if (!text.ok()) {
      return errors.At(file, absl::StrCat(prefix, "intensity_file"), text.status().message());
    }
    // CSV errors name the file as the YAML wrote it, with its own lines.
    absl::StatusOr<IntensitySeries> series = IntensitySeries::ParseCsv(*text, file.Scalar());
    if (!series.ok()) return series.status();
    rates.intensity = *std::move(series);
  }
  const YAML::Node price = node["price_per_kwh"];
  if (!price.IsDefined()) {
    return errors.At(node, absl::StrCat(prefix, "price_per_kwh"), "required");
  }
  absl::StatusOr<double> value = errors.NonNegative(price, absl::StrCat(prefix, "price_per_kwh"));
  if (!value.ok()) return value.status();
  rates.price_per_kwh = *value;
  return rates;
}

}  // namespace

// ---- IntensitySeries ----

IntensitySeries IntensitySeries::Constant(double g_per_kwh) {
  return IntensitySeries({{absl::InfinitePast(), g_per_kwh}});
}

absl::StatusOr<IntensitySeries> IntensitySeries::ParseCsv(absl::string_view text,
                                                          absl::string_view file_name) {
  std::vector<Point> points;
  bool seen_content = false;
  int line_number = 0;
  int previous_line = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() != 2) {
      return LineError(file_name, line_number, "row",
                       absl::StrCat("want TIME,G_PER_KWH, got ", fields.size(), " fields"));
    }
    const absl::string_view time_text = absl::StripAsciiWhitespace(fields[0]);
    const absl::string_view value_text = absl::StripAsciiWhitespace(fields[1]);
    absl::Time from;
    const bool time_ok = ParseCsvTime(time_text, &from);
    double value = 0;
    std::string problem;
    const bool value_ok = ParseNonNegative(value_text, &value, &problem);
    // A header names its columns: neither field is a time or a number.
    double ignored = 0;
    if (!seen_content && !time_ok && !absl::SimpleAtod(value_text, &ignored)) {
      seen_content = true;
      continue;
    }
    seen_content = true;
    if (!time_ok) {
      return LineError(file_name, line_number, "time",
                       absl::StrCat("not RFC 3339 or Unix seconds: ", QuoteField(time_text)));
    }
    if (!value_ok) return LineError(file_name, line_number, "intensity", problem);
    if (!points.empty() && from <= points.back().from) {
      return LineError(
          file_name, line_number, "time",
          absl::StrCat(QuoteField(time_text), " is not after line ", previous_line,
                       "'s time (rows must be sorted by time)"));
    }
    points.push_back({from, value});
    previous_line = line_number;
  }
  if (points.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": no rows (want lines TIME,G_PER_KWH)"));
  }
  return IntensitySeries(std::move(points));
}

double IntensitySeries::At(absl::Time t) const {
  // The first row after t; the one before it is in force.
  auto after = std::upper_bound(points_.begin(), points_.end(), t,
                                [](absl::Time time, const Point& p) { return time < p.from; });
  if (after == points_.begin()) return points_.front().g_per_kwh;
  return std::prev(after)->g_per_kwh;
}

// ---- CarbonConfig ----

absl::StatusOr<CarbonConfig> CarbonConfig::Parse(absl::string_view text,
                                                 const std::string& source,
                                                 const std::string& base_dir) {
  const YamlErrors errors(source);
  absl::StatusOr<YAML::Node> loaded = LoadYaml(text, source);
  if (!loaded.ok()) return loaded.status();
  // Read through a const node: a missing key must not be inserted.
  const YAML::Node& root = *loaded;
  if (!root.IsMap()) {
    return errors.At(root, "document", "expected a mapping with default: and regions:");
  }
  absl::Status keys = errors.CheckKeys(root, "", {"currency", "default", "regions"});
  if (!keys.ok()) return keys;

  CarbonConfig config;
  config.configured_ = true;
  config.currency_ = "USD";
  if (const YAML::Node currency = root["currency"]; currency.IsDefined()) {
    const std::string value = currency.IsScalar() ? currency.Scalar() : "";
    const bool printable = std::all_of(value.begin(), value.end(), [](char c) {
      return static_cast<unsigned char>(c) > ' ' && c != '\x7f' && c != '"';
    });
    if (value.empty() || value.size() > kMaxCurrencyBytes || !printable) {
      return errors.At(currency, "currency",
                       absl::StrCat("expected a currency name (e.g. USD), 1 to ",
                                    kMaxCurrencyBytes, " characters, no spaces"));
    }
    config.currency_ = value;
  }
  const YAML::Node fallback = root["default"];
  if (!fallback.IsDefined()) {
    return errors.At(root, "default",
                     "required (the rates of nodes without a listed region)");
  }
  absl::StatusOr<RegionRates> rates = ParseRates(errors, fallback, "default", base_dir);
  if (!rates.ok()) return rates.status();
  config.default_ = *std::move(rates);
  if (const YAML::Node regions = root["regions"]; regions.IsDefined() && !regions.IsNull()) {
    if (!regions.IsMap()) return errors.At(regions, "regions", "expected a mapping of regions");
    for (const auto& entry : regions) {
      const std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
      if (name.empty()) return errors.At(entry.first, "regions", "expected a region name");
      rates = ParseRates(errors, entry.second, absl::StrCat("regions.", name), base_dir);
      if (!rates.ok()) return rates.status();
      config.regions_.insert_or_assign(name, *std::move(rates));
    }
  }
  return config;
}

absl::StatusOr<CarbonConfig> CarbonConfig::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) return text.status();
  const size_t slash = path.rfind('/');
  return Parse(*text, path, slash == std::string::npos ? "" : path.substr(0, slash + 1));
}

const RegionRates& CarbonConfig::RatesOf(absl::string_view region) const {
  auto it = regions_.find(region);
  return it == regions_.end() ? default_ : it->second;
}

double CarbonConfig::IntensityGPerKwh(absl::string_view region, absl::Time t) const {
  return RatesOf(region).intensity.At(t);
}

double CarbonConfig::PricePerKwh(absl::string_view region) const {
  return RatesOf(region).price_per_kwh;
}

std::vector<std::string> CarbonConfig::Regions() const {
  std::vector<std::string> out;
  for (const auto& [name, rates] : regions_) out.push_back(name);
  return out;
}

}  // namespace joule
