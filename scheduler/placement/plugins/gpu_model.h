#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_MODEL_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_MODEL_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Turns away nodes that do not have enough GPUs of the requested model for
// one replica even when empty: unresolvable, as waiting does not add GPUs.
// PreFilter settles a request no node could ever take from the snapshot's
// per-model maxima, without visiting the nodes.
//
// Thread-compatible: const after construction.
class GpuModelFilter : public FilterPlugin {
 public:
  static constexpr char kName[] = "GpuModel";
  std::string Name() const override { return kName; }
  PluginStatus PreFilter(const PlacementRequest& request,
                         const ClusterSnapshot& snapshot) const override;
  PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                    const ClusterSnapshot& snapshot) const override;
  std::string Reason(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_MODEL_H_
