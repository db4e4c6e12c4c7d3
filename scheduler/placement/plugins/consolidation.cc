#include "scheduler/placement/plugins/consolidation.h"

namespace joule {

double ConsolidationScorer::Score(const PlacementRequest& request, const Candidate& candidate,
                                  const State*) const {
  const NodeView& node = *candidate.node;
  if (request.gpus > 0 && !node.gpus.empty()) {
    const int total = static_cast<int>(node.gpus.size());
    return 100.0 * (total - node.FreeGpus("")) / total;
  }
  if (node.total_cpus <= 0) return 0;
  return 100.0 * (node.total_cpus - node.free_cpus) / node.total_cpus;
}

}  // namespace joule
