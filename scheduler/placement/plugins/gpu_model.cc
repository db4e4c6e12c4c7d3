#include "scheduler/placement/plugins/gpu_model.h"

#include <string>

#include "absl/strings/str_format.h"
#include "scheduler/placement/gpu_pick.h"

namespace joule {

PluginStatus GpuModelFilter::PreFilter(const PlacementRequest& request,
                                       const ClusterSnapshot& snapshot) const {
  if (request.gpus <= 0) return {};
  const ClusterSnapshot::ModelIndex* model = snapshot.model(request.gpu_model);
  const int most = model == nullptr ? 0 : model->most_per_node;
  if (most >= request.gpus) return {};
  return {PluginCode::kUnresolvable, kName,
          absl::StrFormat("no node has %d %s (the most on one node: %d)", request.gpus,
                          GpuNoun(request), most)};
}

PluginCode GpuModelFilter::Filter(const PlacementRequest& request, const NodeView& node,
                                  const ClusterSnapshot&) const {
  if (request.gpus <= 0 || node.TotalGpus(request.gpu_model) >= request.gpus) {
    return PluginCode::kSuccess;
  }
  return PluginCode::kUnresolvable;
}

std::string GpuModelFilter::Reason(const PlacementRequest& request, const NodeView& node,
                                   const ClusterSnapshot&) const {
  return absl::StrFormat("has %d %s, a replica needs %d", node.TotalGpus(request.gpu_model),
                         GpuNoun(request), request.gpus);
}

}  // namespace joule
