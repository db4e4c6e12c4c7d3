#include "scheduler/operator_cap.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace joule {

absl::Status CheckOperatorCap(const v1::NodeInfo& node, const v1::SetCap& cap) {
  const bool cpu = cap.kind() == v1::DEVICE_KIND_CPU;
  if (!cpu && cap.kind() != v1::DEVICE_KIND_GPU &&
      cap.kind() != v1::DEVICE_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("cap.kind: must be GPU or CPU");
  }
  if (!std::isfinite(cap.power_cap_w()) || cap.power_cap_w() < 0) {
    return absl::InvalidArgumentError("cap.power_cap_w: must be a finite number >= 0");
  }
  if (cap.max_frequency_mhz() < 0 || cap.min_frequency_mhz() < 0) {
    return absl::InvalidArgumentError("cap: frequencies must be >= 0");
  }
  if (cpu && cap.min_frequency_mhz() != 0) {
    return absl::InvalidArgumentError(
        "cap.min_frequency_mhz: only for GPUs (locked SM clocks)");
  }
  if (!cpu && cap.min_frequency_mhz() > cap.max_frequency_mhz()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cap: min_frequency_mhz (%d) must be <= max_frequency_mhz (%d)",
        cap.min_frequency_mhz(), cap.max_frequency_mhz()));
  }
  if (cap.power_cap_w() == 0 && cap.max_frequency_mhz() == 0) {
    return absl::InvalidArgumentError(
        "cap: give power_cap_w or max_frequency_mhz");
  }
  const v1::Device* device = nullptr;
  for (const v1::Device& candidate : node.devices()) {
    if (candidate.kind() == (cpu ? v1::DEVICE_KIND_CPU : v1::DEVICE_KIND_GPU) &&
        candidate.index() == cap.index()) {
      device = &candidate;
    }
  }
  if (device == nullptr) {
    return absl::NotFoundError(absl::StrFormat("node %s has no %s %d", node.name(),
                                               cpu ? "CPU package" : "GPU", cap.index()));
  }
  if (cap.power_cap_w() > 0 && device->power_limit_max_w() > 0 &&
      (cap.power_cap_w() < device->power_limit_min_w() ||
       cap.power_cap_w() > device->power_limit_max_w())) {
    return absl::OutOfRangeError(absl::StrFormat(
        "cap.power_cap_w: %g W outside %s %d's allowed range [%g, %g] W",
        cap.power_cap_w(), cpu ? "CPU package" : "GPU", cap.index(),
        device->power_limit_min_w(), device->power_limit_max_w()));
  }
  if (cpu && cap.power_cap_w() > 0 && device->source() != "rapl") {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node.name(), " has no RAPL power limit (CPU power is ",
        device->source(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace joule
