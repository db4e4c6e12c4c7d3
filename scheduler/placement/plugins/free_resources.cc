#include "scheduler/placement/plugins/free_resources.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "scheduler/placement/gpu_pick.h"

namespace joule {
namespace {

// Rounding slack for fractional CPUs.
constexpr double kCpuEpsilon = 1e-9;

}  // namespace

PluginStatus FreeResourcesFilter::PreFilter(const PlacementRequest& request,
                                            const ClusterSnapshot& snapshot) const {
  if (snapshot.most_cpus() + kCpuEpsilon < request.cpus) {
    return {PluginCode::kUnresolvable, kName,
            absl::StrFormat("no node has %.2f CPUs (the most on one node: %.2f)", request.cpus,
                            snapshot.most_cpus())};
  }
  if (snapshot.most_memory_bytes() < request.memory_bytes) {
    return {PluginCode::kUnresolvable, kName,
            absl::StrFormat("no node has %d memory bytes (the most on one node: %d)",
                            request.memory_bytes, snapshot.most_memory_bytes())};
  }
  if (request.gpus <= 0) return {};
  const int most = snapshot.MostFreeOnOneNode(request.gpu_model);
  if (most >= request.gpus) return {};
  std::string unusable;
  if (const ClusterSnapshot::ModelIndex* index = snapshot.model(request.gpu_model)) {
    if (index->hot > 0) absl::StrAppend(&unusable, "; ", index->hot, " too hot");
    if (index->held > 0) {
      absl::StrAppend(&unusable, "; ", index->held, " held by pods, e.g. ", index->held_example);
    }
  }
  return {PluginCode::kUnschedulable, kName,
          absl::StrFormat("no node has %d free %s now (the most free on one node: %d%s)",
                          request.gpus, GpuNoun(request), most, unusable)};
}

PluginCode FreeResourcesFilter::Filter(const PlacementRequest& request, const NodeView& node,
                                       const ClusterSnapshot&) const {
  if (request.gpus > 0 && node.FreeGpus(request.gpu_model) < request.gpus) {
    return PluginCode::kUnschedulable;
  }
  if (node.free_cpus + kCpuEpsilon < request.cpus) {
    return node.total_cpus + kCpuEpsilon < request.cpus ? PluginCode::kUnresolvable
                                                        : PluginCode::kUnschedulable;
  }
  if (node.free_memory_bytes < request.memory_bytes) {
    return node.total_memory_bytes < request.memory_bytes ? PluginCode::kUnresolvable
                                                          : PluginCode::kUnschedulable;
  }
  return PluginCode::kSuccess;
}

std::string FreeResourcesFilter::Reason(const PlacementRequest& request, const NodeView& node,
                                        const ClusterSnapshot&) const {
  const int free_gpus = node.FreeGpus(request.gpu_model);
  if (request.gpus > 0 && free_gpus < request.gpus) {
    int hot = 0;
    std::vector<std::string> held;
    for (const GpuView& gpu : node.gpus) {
      if (!ModelMatches(request.gpu_model, gpu)) continue;
      hot += gpu.free && gpu.hot;
      if (!gpu.held_by.empty()) {
        held.push_back(absl::StrCat("GPU ", gpu.index, " held by pod ", gpu.held_by));
      }
    }
    std::vector<std::string> notes;
    if (hot > 0) notes.push_back(absl::StrFormat("%d more too hot", hot));
    constexpr size_t kHeldNamed = 3;
    if (held.size() > kHeldNamed) {
      const size_t more = held.size() - kHeldNamed;
      held.resize(kHeldNamed);
      held.push_back(absl::StrCat("and ", more, " more held by pods"));
    }
    if (!held.empty()) notes.push_back(absl::StrJoin(held, ", "));
    return absl::StrFormat(
        "%d free %s%s, a replica needs %d", free_gpus, GpuNoun(request),
        notes.empty() ? "" : absl::StrCat(" (", absl::StrJoin(notes, "; "), ")"), request.gpus);
  }
  if (node.free_cpus + kCpuEpsilon < request.cpus) {
    return absl::StrFormat("%.2f free CPUs, a replica needs %.2f", node.free_cpus, request.cpus);
  }
  return absl::StrFormat("%d free memory bytes, a replica needs %d", node.free_memory_bytes,
                         request.memory_bytes);
}

}  // namespace joule
