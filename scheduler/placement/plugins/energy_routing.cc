#include "scheduler/placement/plugins/energy_routing.h"

#include <string>

#include "scheduler/placement/gpu_pick.h"

namespace joule {
namespace {

bool Applies(const PlacementRequest& request) {
  return !request.routed_models.empty() && request.gpus > 0;
}

}  // namespace

PluginStatus EnergyRoutingFilter::PreFilter(const PlacementRequest& request,
                                            const ClusterSnapshot& snapshot) const {
  if (!Applies(request)) return {};
  // An upper bound on the routed GPUs one node has free: a node with two
  // routed models may add both.
  int most = 0;
  for (const std::string& model : request.routed_models) {
    if (!request.gpu_model.empty() && model != request.gpu_model) continue;
    most += snapshot.MostFreeOnOneNode(model);
  }
  if (most >= request.gpus) return {};
  return {PluginCode::kUnschedulable, kName, request.routing_note};
}

PluginCode EnergyRoutingFilter::Filter(const PlacementRequest& request, const NodeView& node,
                                       const ClusterSnapshot&) const {
  if (!Applies(request)) return PluginCode::kSuccess;
  int routed = 0;
  for (const GpuView& gpu : node.gpus) {
    routed += Usable(gpu) && ModelMatches(request.gpu_model, gpu) &&
              request.routed_models.count(gpu.model) > 0;
  }
  return routed >= request.gpus ? PluginCode::kSuccess : PluginCode::kUnschedulable;
}

std::string EnergyRoutingFilter::Reason(const PlacementRequest& request, const NodeView&,
                                        const ClusterSnapshot&) const {
  return request.routing_note;
}

}  // namespace joule
