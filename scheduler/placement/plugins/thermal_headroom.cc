#include "scheduler/placement/plugins/thermal_headroom.h"

#include <algorithm>
#include <cstdint>


namespace joule {

double ThermalHeadroomScorer::Score(const PlacementRequest&, const Candidate& candidate,
                                    const State*) const {
  double score = 100;
  for (const GpuView* gpu : candidate.gpus) {
    if (gpu->throttle_temp_c <= 0) continue;
    const double headroom =
        std::clamp((gpu->throttle_temp_c - gpu->temp_c) / gpu->throttle_temp_c, 0.0, 1.0);
    score = std::min(score, 100.0 * headroom);
  }
  return score;
}

}  // namespace joule
