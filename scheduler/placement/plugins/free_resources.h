#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_FREE_RESOURCES_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_FREE_RESOURCES_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Turns away nodes without enough usable free GPUs (not in use, not held by
// a pod, not too hot), free CPUs or free memory for one replica:
// unschedulable, or unresolvable where the node's total CPUs or memory are
// too small. PreFilter settles the request from the snapshot's aggregates
// when no node has enough free GPUs now, or no node enough CPUs or memory
// at all.
//
// Thread-compatible: const after construction.
class FreeResourcesFilter : public FilterPlugin {
 public:
  static constexpr char kName[] = "FreeResources";
  std::string Name() const override { return kName; }
  PluginStatus PreFilter(const PlacementRequest& request,
                         const ClusterSnapshot& snapshot) const override;
  PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                    const ClusterSnapshot& snapshot) const override;
  std::string Reason(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_FREE_RESOURCES_H_
