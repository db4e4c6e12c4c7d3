#include "scheduler/placement/plugins/awake.h"

namespace joule {

double AwakeScorer::Score(const PlacementRequest&, const Candidate& candidate,
                          const State*) const {
  return candidate.node->asleep ? 0 : 100;
}

}  // namespace joule
