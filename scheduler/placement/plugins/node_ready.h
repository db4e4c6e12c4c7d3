#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_NODE_READY_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_NODE_READY_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Turns away nodes that are down (their agent is gone, or idle power
// management is suspending them): unschedulable, as they may come back.
//
// Thread-compatible: const after construction.
class NodeReadyFilter : public FilterPlugin {
 public:
  static constexpr char kName[] = "NodeReady";
  std::string Name() const override { return kName; }
  PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                    const ClusterSnapshot& snapshot) const override;
  std::string Reason(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_NODE_READY_H_
