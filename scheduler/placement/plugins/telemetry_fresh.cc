#include "scheduler/placement/plugins/telemetry_fresh.h"

#include <string>

#include "absl/strings/str_format.h"

namespace joule {

PluginCode TelemetryFreshFilter::Filter(const PlacementRequest&, const NodeView& node,
                                        const ClusterSnapshot& snapshot) const {
  return snapshot.now - node.last_telemetry <= max_age_ ? PluginCode::kSuccess
                                                        : PluginCode::kUnschedulable;
}

std::string TelemetryFreshFilter::Reason(const PlacementRequest&, const NodeView& node,
                                         const ClusterSnapshot& snapshot) const {
  return absl::StrFormat("no telemetry for %.0fs (limit %.0fs)",
                         absl::ToDoubleSeconds(snapshot.now - node.last_telemetry),
                         absl::ToDoubleSeconds(max_age_));
}

}  // namespace joule
