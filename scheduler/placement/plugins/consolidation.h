#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_CONSOLIDATION_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_CONSOLIDATION_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Bin-packing: prefers nodes that are already busy, so whole nodes stay
// idle. Scores the share of the node in use before this replica (an idle
// node scores 0, whatever its size): GPUs for a GPU request, else CPUs.
//
// Thread-compatible: const after construction.
class ConsolidationScorer : public ScorePlugin {
 public:
  static constexpr char kName[] = "Consolidation";
  std::string Name() const override { return kName; }
  double Score(const PlacementRequest& request, const Candidate& candidate,
               const State* state) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_CONSOLIDATION_H_
