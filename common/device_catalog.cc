#include "common/device_catalog.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

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
  const std::string wanted = Normalize(name);
  for (const GpuModelSpec& spec : GpuCatalog()) {
    if (Normalize(spec.model) == wanted) return spec;
  }
  return absl::nullopt;
}

}  // namespace joule
