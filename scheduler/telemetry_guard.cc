#include "scheduler/telemetry_guard.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"

namespace joule {
namespace {

// Cumulative values are doubles summed on the agent: a decrease this small
// (relative) is rounding, not a counter going back.
constexpr double kRelativeTolerance = 1e-9;

std::string DeviceName(const v1::DeviceSample& device) {
  switch (device.kind()) {
    case v1::DEVICE_KIND_GPU:
      return absl::StrFormat("GPU %d", device.index());
    case v1::DEVICE_KIND_CPU:
      return absl::StrFormat("CPU package %d", device.index());
    case v1::DEVICE_KIND_MEMORY:
      return absl::StrFormat("memory %d", device.index());
    default:
      return absl::StrFormat("device %d", device.index());
  }
}

TelemetryProblem Problem(TelemetryRejection reason, std::string detail) {
  return TelemetryProblem{reason, std::move(detail)};
}

double Allowance(double ceiling_w, absl::Duration elapsed, absl::Duration grace) {
  return ceiling_w * absl::ToDoubleSeconds(std::max(elapsed, absl::ZeroDuration()) + grace);
}

}  // namespace

absl::string_view TelemetryRejectionLabel(TelemetryRejection reason) {
  switch (reason) {
    case TelemetryRejection::kNotFinite:
      return "not_finite";
    case TelemetryRejection::kNegative:
      return "negative";
    case TelemetryRejection::kPowerAboveMax:
      return "power_above_max";
    case TelemetryRejection::kTemperatureOutOfRange:
      return "temperature_out_of_range";
    case TelemetryRejection::kUtilizationOutOfRange:
      return "utilization_out_of_range";
    case TelemetryRejection::kEnergyBackwards:
      return "energy_backwards";
    case TelemetryRejection::kEnergyAboveMax:
      return "energy_above_max";
  }
  return "unknown";
}

TelemetryGuard::TelemetryGuard(std::vector<GpuModelSpec> catalog, TelemetryLimits limits)
    : catalog_(std::move(catalog)), limits_(limits) {}

void TelemetryGuard::Register(const v1::NodeInfo& node) {
  NodeState& state = nodes_[node.name()];
  state.registered = true;
  state.device_ceiling_w.clear();
  state.counters.clear();
  const double cap = limits_.max_device_power_w;
  double sum_w = 0;
  for (const v1::Device& device : node.devices()) {
    double max_w = device.power_limit_max_w();
    if (!(max_w > 0) && device.kind() == v1::DEVICE_KIND_GPU) {
      if (absl::optional<GpuModelSpec> spec = FindGpuModel(catalog_, device.model())) {
        max_w = spec->power_limit_max_w;
      }
    }
    // NaN and unknown limits get the absolute ceiling.
    const double ceiling_w =
        max_w > 0 ? std::min(cap, limits_.device_ceiling_factor * max_w) : cap;
    state.device_ceiling_w[DeviceKey{device.kind(), device.index()}] = ceiling_w;
    sum_w += ceiling_w;
  }
  const double static_w = node.static_power_w() > 0 ? std::min(cap, node.static_power_w()) : 0;
  state.node_ceiling_w = sum_w + 2 * static_w + limits_.node_headroom_w;
}

const TelemetryGuard::NodeState* TelemetryGuard::Find(const std::string& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second;
}

double TelemetryGuard::DeviceCeilingW(const std::string& node, v1::DeviceKind kind,
                                      int32_t index) const {
  return DeviceCeilingW(Find(node), kind, index);
}

double TelemetryGuard::DeviceCeilingW(const NodeState* state, v1::DeviceKind kind,
                                      int32_t index) const {
  if (state == nullptr) return limits_.max_device_power_w;
  auto it = state->device_ceiling_w.find(DeviceKey{kind, index});
  return it == state->device_ceiling_w.end() ? limits_.max_device_power_w : it->second;
}

double TelemetryGuard::NodeCeilingW(const std::string& node) const {
  return NodeCeilingW(Find(node));
}

double TelemetryGuard::NodeCeilingW(const NodeState* state) const {
  // A node that never registered: one device of unknown limits.
  return state != nullptr && state->registered
             ? state->node_ceiling_w
             : limits_.max_device_power_w + limits_.node_headroom_w;
}

absl::optional<TelemetryProblem> TelemetryGuard::CheckDevice(const v1::DeviceSample& device,
                                                             double ceiling_w) const {
  // Telemetry hot path: the device's name is made only for a problem.
  const auto name = [&device] { return DeviceName(device); };
  const std::pair<const char*, double> values[] = {
      {"power_w", device.power_w()},
      {"energy_j", device.energy_j()},
      {"temp_c", device.temp_c()},
      {"utilization", device.utilization()},
      {"memory_utilization", device.memory_utilization()},
      {"power_cap_w", device.power_cap_w()},
  };
  for (const auto& [field, value] : values) {
    if (!std::isfinite(value)) {
      return Problem(TelemetryRejection::kNotFinite,
                     absl::StrFormat("%s: %s is %f", name(), field, value));
    }
  }
  const std::pair<const char*, double> non_negative[] = {
      {"power_w", device.power_w()},
      {"energy_j", device.energy_j()},
      {"power_cap_w", device.power_cap_w()},
      {"sm_clock_mhz", device.sm_clock_mhz()},
      {"mem_clock_mhz", device.mem_clock_mhz()},
  };
  for (const auto& [field, value] : non_negative) {
    if (value < 0) {
      return Problem(TelemetryRejection::kNegative,
                     absl::StrFormat("%s: %s is %g", name(), field, value));
    }
  }
  if (device.power_w() > ceiling_w || device.power_cap_w() > ceiling_w) {
    return Problem(TelemetryRejection::kPowerAboveMax,
                   absl::StrFormat("%s: power_w %g / power_cap_w %g above its ceiling of %g W",
                                   name(), device.power_w(), device.power_cap_w(), ceiling_w));
  }
  if (device.temp_c() < limits_.min_temp_c || device.temp_c() > limits_.max_temp_c) {
    return Problem(TelemetryRejection::kTemperatureOutOfRange,
                   absl::StrFormat("%s: temp_c %g outside [%g, %g]", name(), device.temp_c(),
                                   limits_.min_temp_c, limits_.max_temp_c));
  }
  for (const auto& [field, value] : {std::make_pair("utilization", device.utilization()),
                                     std::make_pair("memory_utilization",
                                                    device.memory_utilization())}) {
    if (value < 0 || value > 1) {
      return Problem(TelemetryRejection::kUtilizationOutOfRange,
                     absl::StrFormat("%s: %s %g outside [0, 1]", name(), field, value));
    }
  }
  return absl::nullopt;
}

absl::optional<TelemetryProblem> TelemetryGuard::CheckSample(const std::string& node,
                                                             const v1::NodeSample& sample,
                                                             absl::Time now) {
  // One lookup of the node per report (the ceilings below read `known`).
  auto found = nodes_.find(node);
  NodeState* known = found == nodes_.end() ? nullptr : &found->second;
  const double node_ceiling_w = NodeCeilingW(known);
  for (const v1::DeviceSample& device : sample.devices()) {
    absl::optional<TelemetryProblem> problem =
        CheckDevice(device, DeviceCeilingW(known, device.kind(), device.index()));
    if (problem.has_value()) return problem;
  }
  const double node_w = sample.node_power_w();
  if (!std::isfinite(node_w)) {
    return Problem(TelemetryRejection::kNotFinite,
                   absl::StrFormat("node_power_w is %f", node_w));
  }
  if (node_w < 0) {
    return Problem(TelemetryRejection::kNegative, absl::StrFormat("node_power_w is %g", node_w));
  }
  if (node_w > node_ceiling_w) {
    return Problem(TelemetryRejection::kPowerAboveMax,
                   absl::StrFormat("node_power_w %g above the node's ceiling of %g W", node_w,
                                   node_ceiling_w));
  }
  NodeState& state = known != nullptr ? *known : nodes_[node];
  // Counters, against the baselines of the last accepted sample.
  for (const v1::DeviceSample& device : sample.devices()) {
    auto baseline = state.counters.find(DeviceKey{device.kind(), device.index()});
    if (baseline == state.counters.end()) continue;
    const double before_j = baseline->second.energy_j;
    const double now_j = device.energy_j();
    const double allowance_j =
        Allowance(DeviceCeilingW(&state, device.kind(), device.index()),
                  now - baseline->second.at, limits_.energy_grace);
    if (now_j - before_j > allowance_j) {
      return Problem(TelemetryRejection::kEnergyAboveMax,
                     absl::StrFormat("%s: energy_j rose %g J in %s, more than %g J",
                                     DeviceName(device), now_j - before_j,
                                     absl::FormatDuration(now - baseline->second.at),
                                     allowance_j));
    }
    if (now_j < before_j * (1 - kRelativeTolerance) && now_j > allowance_j) {
      return Problem(TelemetryRejection::kEnergyBackwards,
                     absl::StrFormat("%s: energy_j went from %g to %g J, too high for a "
                                     "counter that started again (at most %g J)",
                                     DeviceName(device), before_j, now_j, allowance_j));
    }
  }
  for (const v1::DeviceSample& device : sample.devices()) {
    state.counters[DeviceKey{device.kind(), device.index()}] = Baseline{device.energy_j(), now};
  }
  return absl::nullopt;
}

absl::optional<TelemetryProblem> TelemetryGuard::CheckTaskEnergy(
    const std::string& node, const v1::Energy& reported, const v1::Energy& accounted,
    absl::Duration since_submit) const {
  const std::pair<const char*, double> values[] = {
      {"gpu_j", reported.gpu_j()},
      {"cpu_j", reported.cpu_j()},
      {"static_j", reported.static_j()},
      {"total_j", reported.total_j()},
  };
  for (const auto& [field, value] : values) {
    if (!std::isfinite(value)) {
      return Problem(TelemetryRejection::kNotFinite,
                     absl::StrFormat("task energy %s is %f", field, value));
    }
    if (value < 0) {
      return Problem(TelemetryRejection::kNegative,
                     absl::StrFormat("task energy %s is %g", field, value));
    }
  }
  const double allowance_j =
      Allowance(NodeCeilingW(node), since_submit, limits_.energy_grace);
  const double largest_j =
      std::max(reported.total_j(), reported.gpu_j() + reported.cpu_j() + reported.static_j());
  if (largest_j > allowance_j) {
    return Problem(TelemetryRejection::kEnergyAboveMax,
                   absl::StrFormat("task energy %g J is more than the node could draw since "
                                   "the job was submitted %s ago (%g J)",
                                   largest_j, absl::FormatDuration(since_submit), allowance_j));
  }
  if (reported.total_j() < accounted.total_j() * (1 - kRelativeTolerance)) {
    return Problem(TelemetryRejection::kEnergyBackwards,
                   absl::StrFormat("task energy went from %g to %g J", accounted.total_j(),
                                   reported.total_j()));
  }
  return absl::nullopt;
}

bool TelemetryGuard::FirstOf(const std::string& node, TelemetryRejection reason) {
  return nodes_[node].logged.insert(reason).second;
}

}  // namespace joule
