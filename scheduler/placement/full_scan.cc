#include "scheduler/placement/full_scan.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "scheduler/placement/gpu_pick.h"

namespace joule {

std::vector<ReplicaPlacement> NaiveFullScan(const PlacementPipeline& pipeline,
                                            const PlacementRequest& request,
                                            ClusterSnapshot snapshot) {
  std::vector<ReplicaPlacement> placed;
  for (int32_t replica = 0; replica < request.replicas; ++replica) {
    std::vector<Candidate> feasible;
    for (int i = 0; i < static_cast<int>(snapshot.nodes.size()); ++i) {
      const NodeView& node = snapshot.nodes[i];
      bool passes = true;
      for (const auto& filter : pipeline.filters()) {
        passes = passes && filter->Filter(request, node, snapshot) == PluginCode::kSuccess;
      }
      if (passes) feasible.push_back({i, &node, PickGpus(request, node)});
    }
    if (feasible.empty()) return {};
    std::vector<double> totals(feasible.size(), 0);
    for (const PlacementPipeline::WeightedScorer& scorer : pipeline.scorers()) {
      std::unique_ptr<ScorePlugin::State> state = scorer.plugin->PreScore(request, feasible);
      std::vector<double> scores;
      for (const Candidate& candidate : feasible) {
        scores.push_back(scorer.plugin->Score(request, candidate, state.get()));
      }
      scorer.plugin->Normalize(state.get(), &scores);
      for (size_t c = 0; c < feasible.size(); ++c) {
        totals[c] += std::clamp(scores[c], 0.0, 100.0) * scorer.weight;
      }
    }
    size_t best = 0;
    for (size_t c = 1; c < feasible.size(); ++c) {
      if (totals[c] > totals[best] ||
          (totals[c] == totals[best] && feasible[c].node->name < feasible[best].node->name)) {
        best = c;
      }
    }
    const std::vector<int32_t> picked = GpuIndices(feasible[best].gpus);
    NodeView& node = snapshot.nodes[feasible[best].node_index];
    for (GpuView& gpu : node.gpus) {
      if (std::find(picked.begin(), picked.end(), gpu.index) != picked.end()) gpu.free = false;
    }
    node.usable_gpus = -1;  // FreeGpus counts again
    node.free_cpus -= request.cpus;
    node.free_memory_bytes -= request.memory_bytes;
    ++node.running_tasks;
    placed.push_back({node.name, picked});
  }
  return placed;
}

}  // namespace joule
