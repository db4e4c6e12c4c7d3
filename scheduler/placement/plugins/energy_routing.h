#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_ROUTING_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_ROUTING_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Keeps a job off GPU models its energy routing leaves out
// (PlacementRequest::routed_models): the node needs enough usable GPUs of a
// routed model for one replica. Unschedulable: the job waits for them.
//
// Thread-compatible: const after construction.
class EnergyRoutingFilter : public FilterPlugin {
 public:
  static constexpr char kName[] = "EnergyRouting";
  std::string Name() const override { return kName; }
  PluginStatus PreFilter(const PlacementRequest& request,
                         const ClusterSnapshot& snapshot) const override;
  PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                    const ClusterSnapshot& snapshot) const override;
  std::string Reason(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_ROUTING_H_
