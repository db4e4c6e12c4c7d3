#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_FIT_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_FIT_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Keeps CPU-only work off GPU nodes: a GPU node's CPUs and memory feed its
// GPUs, and a CPU job there can leave a GPU job unplaceable. 0 for a CPU
// request on a GPU node, 100 otherwise.
//
// Thread-compatible: const after construction.
class GpuFitScorer : public ScorePlugin {
 public:
  static constexpr char kName[] = "GpuFit";
  std::string Name() const override { return kName; }
  double Score(const PlacementRequest& request, const Candidate& candidate,
               const State* state) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_GPU_FIT_H_
