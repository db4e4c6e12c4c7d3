#include "common/device_catalog.h"

#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace joule {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

std::string Normalize(absl::string_view name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out.push_back(absl::ascii_tolower(c));
    }
  }
  for (absl::string_view vendor : {"nvidia", "tesla", "quadro"}) {
    if (absl::StartsWith(out, vendor)) out = out.substr(vendor.size());
  }
  return out;
}

}  // namespace

const std::vector<GpuModelSpec>& GpuCatalog() {
  static const auto* catalog = new std::vector<GpuModelSpec>{
      {"V100", 16 * kGiB, 100, 250, 250, 35, 135, 1380, 877, 83},
      {"A40", 48 * kGiB, 100, 300, 300, 30, 210, 1740, 7251, 85},
      {"RTX6000", 24 * kGiB, 100, 260, 260, 20, 300, 1770, 7001, 84},
      {"A100", 40 * kGiB, 100, 400, 400, 50, 210, 1410, 1215, 85},
      {"H100", 80 * kGiB, 200, 700, 700, 70, 345, 1980, 2619, 87},
  };
  return *catalog;
}

absl::optional<GpuModelSpec> FindGpuModel(absl::string_view name) {
  return FindGpuModel(GpuCatalog(), name);
}

absl::optional<GpuModelSpec> FindGpuModel(const std::vector<GpuModelSpec>& catalog,
                                          absl::string_view name) {
  const std::string wanted = Normalize(name);
  for (const GpuModelSpec& spec : catalog) {
    if (Normalize(spec.model) == wanted) return spec;
  }
  return absl::nullopt;
}

absl::StatusOr<std::vector<GpuModelSpec>> ParseGpuCatalog(absl::string_view text) {
  std::vector<GpuModelSpec> out;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    if (fields.size() != 10) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPU catalog line %d: %d fields, expected 10 (model,memory_gib,limit_min_w,"
          "limit_default_w,limit_max_w,idle_w,sm_clock_min_mhz,sm_clock_max_mhz,"
          "mem_clock_mhz,throttle_temp_c)",
          number, fields.size()));
    }
    static constexpr const char* kNames[] = {
        "model",  "memory_gib",       "limit_min_w",      "limit_default_w", "limit_max_w",
        "idle_w", "sm_clock_min_mhz", "sm_clock_max_mhz", "mem_clock_mhz",   "throttle_temp_c"};
    double v[10] = {};
    for (int i = 1; i < 10; ++i) {
      const std::string field(absl::StripAsciiWhitespace(fields[i]));
      if (!absl::SimpleAtod(field, &v[i]) || !std::isfinite(v[i]) || v[i] < 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "GPU catalog line %d: %s: \"%s\" is not a number >= 0", number, kNames[i],
            field));
      }
    }
    GpuModelSpec spec;
    spec.model = std::string(absl::StripAsciiWhitespace(fields[0]));
    spec.memory_bytes = static_cast<int64_t>(v[1] * kGiB);
    spec.power_limit_min_w = v[2];
    spec.power_limit_default_w = v[3];
    spec.power_limit_max_w = v[4];
    spec.idle_power_w = v[5];
    spec.sm_clock_min_mhz = static_cast<int32_t>(v[6]);
    spec.sm_clock_max_mhz = static_cast<int32_t>(v[7]);
    spec.mem_clock_mhz = static_cast<int32_t>(v[8]);
    spec.throttle_temp_c = v[9];
    if (spec.model.empty() || !(spec.power_limit_min_w <= spec.power_limit_default_w &&
                                spec.power_limit_default_w <= spec.power_limit_max_w) ||
        spec.power_limit_max_w <= 0 || spec.idle_power_w > spec.power_limit_max_w ||
        spec.sm_clock_max_mhz <= 0 || spec.sm_clock_min_mhz > spec.sm_clock_max_mhz) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPU catalog line %d: needs a model name, 0 < min <= default <= max power "
          "limits, idle <= max, and 0 < min clock <= max clock",
          number));
    }
    out.push_back(std::move(spec));
  }
  return out;
}

std::vector<GpuModelSpec> MergeGpuCatalog(const std::vector<GpuModelSpec>& overrides) {
  std::vector<GpuModelSpec> merged = GpuCatalog();
  for (const GpuModelSpec& spec : overrides) {
    bool replaced = false;
    for (GpuModelSpec& existing : merged) {
      if (Normalize(existing.model) == Normalize(spec.model)) {
        existing = spec;
        replaced = true;
      }
    }
    if (!replaced) merged.push_back(spec);
  }
  return merged;
}

absl::StatusOr<std::vector<GpuModelSpec>> LoadGpuCatalogFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read"));
  absl::StatusOr<std::vector<GpuModelSpec>> overrides = ParseGpuCatalog(text.str());
  if (!overrides.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", overrides.status().message()));
  }
  return MergeGpuCatalog(*overrides);
}

}  // namespace joule
