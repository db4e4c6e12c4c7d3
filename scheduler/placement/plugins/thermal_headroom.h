#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_THERMAL_HEADROOM_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_THERMAL_HEADROOM_H_

#include <string>

#include "scheduler/placement/framework.h"

namespace joule {

// Prefers GPUs far from their throttle temperature: the score is the
// smallest headroom among the GPUs the replica would get, as a share of the
// throttle temperature.
//
// Thread-compatible: const after construction.
class ThermalHeadroomScorer : public ScorePlugin {
 public:
  static constexpr char kName[] = "ThermalHeadroom";
  std::string Name() const override { return kName; }
  double Score(const PlacementRequest& request, const Candidate& candidate,
               const State* state) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_THERMAL_HEADROOM_H_
