#include "scheduler/placement/plugins/node_ready.h"

#include <string>

namespace joule {

PluginCode NodeReadyFilter::Filter(const PlacementRequest&, const NodeView& node,
                                   const ClusterSnapshot&) const {
  return node.ready ? PluginCode::kSuccess : PluginCode::kUnschedulable;
}

std::string NodeReadyFilter::Reason(const PlacementRequest&, const NodeView&,
                                    const ClusterSnapshot&) const {
  return "node is down";
}

}  // namespace joule
