#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_EFFICIENCY_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_EFFICIENCY_H_

#include <memory>
#include <string>
#include <vector>

#include "scheduler/placement/framework.h"

namespace joule {

// Prefers the node where the replica costs the fewest joules. Where the
// job's class has been profiled on the GPU model of every candidate, the cost
// is predicted joules per sample: the GPUs' measured J/sample at the
// objective's cap, plus, when the node is idle, its static power over the
// time a sample takes there (waking a node costs its fans and board too).
// Otherwise a prior: the replica's added power (the GPUs' power limits, plus
// static power on an idle node). Normalized against the cheapest candidate
// of the cycle.
//
// Thread-compatible: const after construction.
class EnergyEfficiencyScorer : public ScorePlugin {
 public:
  static constexpr char kName[] = "EnergyEfficiency";
  std::string Name() const override { return kName; }
  std::unique_ptr<State> PreScore(const PlacementRequest& request,
                                  const std::vector<Candidate>& candidates) const override;
  // The candidate's cost (joules per sample, or watts): lower is better.
  double Score(const PlacementRequest& request, const Candidate& candidate,
               const State* state) const override;
  // 100 x the cheapest candidate's cost / this one's.
  void Normalize(const State* state, std::vector<double>* scores) const override;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGINS_ENERGY_EFFICIENCY_H_
