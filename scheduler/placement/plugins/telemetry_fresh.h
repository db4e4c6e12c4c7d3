#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_TELEMETRY_FRESH_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_TELEMETRY_FRESH_H_

#include <string>

#include "absl/time/time.h"
#include "scheduler/placement/framework.h"

namespace joule {

// Turns away nodes whose last telemetry (not heartbeat) is older than
// `max_age`: placement would go by stale power and temperature readings.
// Unschedulable: the next report makes the node eligible again.
//
// Thread-compatible: const after construction.
class TelemetryFreshFilter : public FilterPlugin {
 public:
  static constexpr char kName[] = "TelemetryFresh";
  explicit TelemetryFreshFilter(absl::Duration max_age) : max_age_(max_age) {}
  std::string Name() const override { return kName; }
  PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                    const ClusterSnapshot& snapshot) const override;
  std::string Reason(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override;

 private:
  absl::Duration max_age_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_TELEMETRY_FRESH_H_
