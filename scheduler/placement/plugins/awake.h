#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_AWAKE_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_AWAKE_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Prefers awake nodes: a suspended one costs a resume (minutes) and its
// static power from then on. 0 for an asleep node, 100 otherwise.
//
// Thread-compatible: const after construction.
class AwakeScorer : public ScorePlugin {
 public:
  static constexpr char kName[] = "Awake";
  std::string Name() const override { return kName; }
  double Score(const PlacementRequest& request, const Candidate& candidate,
               const State* state) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_AWAKE_H_
