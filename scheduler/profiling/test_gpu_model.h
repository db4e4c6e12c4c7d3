#ifndef JOULE_SCHEDULER_PROFILING_TEST_GPU_MODEL_H_
#define JOULE_SCHEDULER_PROFILING_TEST_GPU_MODEL_H_

#include <algorithm>
#include <cmath>
#include <vector>

#include "scheduler/profiling/cap_choice.h"

namespace joule {
namespace testing_model {

// The simulated GPU's steady-state model (agent/devices.h, SimulatedGpu):
//   P_demand = idle + 0.9 * (max - idle);  P = min(cap, P_demand)
//   f = cbrt((P - idle) / (P_demand - idle))
//   speed = 1 / (0.35 + 0.65 / f)
// and throughput = base_throughput * speed. Defaults: a V100 (idle 35 W,
// limits 100-250 W) running 1000 samples/s uncapped.
struct TestGpuModel {
  double idle_w = 35;
  double max_limit_w = 250;
  double base_throughput = 1000;

  double DemandW() const { return idle_w + 0.9 * (max_limit_w - idle_w); }
  double PowerW(double cap_w) const { return std::min(cap_w, DemandW()); }
  double Throughput(double cap_w) const {
    const double f = std::cbrt((PowerW(cap_w) - idle_w) / (DemandW() - idle_w));
    return base_throughput / (0.35 + 0.65 / f);
  }
  CapPoint Point(double cap_w) const {
    return CapPoint{cap_w, Throughput(cap_w), PowerW(cap_w)};
  }
  // Points at max, max - step, ..., min.
  std::vector<CapPoint> Profile(double min_w, double max_w,
                                double step_w) const {
    std::vector<CapPoint> profile;
    for (double cap = max_w; cap >= min_w - 1e-9; cap -= step_w) {
      profile.push_back(Point(cap));
    }
    return profile;
  }
};

}  // namespace testing_model
}  // namespace joule

#endif  // JOULE_SCHEDULER_PROFILING_TEST_GPU_MODEL_H_
