#include "scheduler/placement/plugins/gpu_fit.h"

namespace joule {

double GpuFitScorer::Score(const PlacementRequest& request, const Candidate& candidate,
                           const State*) const {
  return request.gpus == 0 && !candidate.node->gpus.empty() ? 0 : 100;
}

}  // namespace joule
