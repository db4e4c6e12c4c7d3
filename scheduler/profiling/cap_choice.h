#ifndef JOULE_SCHEDULER_PROFILING_CAP_CHOICE_H_
#define JOULE_SCHEDULER_PROFILING_CAP_CHOICE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"
#include "spec/job_validation.h"  // kDefaultMaxSlowdown

namespace joule {

// One measured (or modelled) operating point of a task at a power cap.
struct CapPoint {
  // The power limit applied to each of the task's devices, W.
  double cap_w = 0;
  // Work units per second at this cap (samples/s for training tasks).
  double throughput = 0;
  // Average power of the task's devices at this cap, W.
  double power_w = 0;
};

// The cap the energy brain holds for a task, with what it expects to cost.
struct CapDecision {
  double cap_w = 0;
  // remaining_work × energy per unit of work at cap_w, J.
  double predicted_energy_j = 0;
  // remaining_work × time per unit of work at cap_w, s.
  double predicted_seconds = 0;
  // False only when a deadline cannot be met by any cap (the fastest is
  // chosen then).
  bool objective_met = true;
  // One sentence for `joulectl explain`, e.g. "150 W: 18% less energy per
  // sample than 250 W at 1.07x the time (limit 1.10x)".
  std::string reason;
};

// Chooses the power cap that best serves `objective`, given a task's
// profile. Pure: no clock reads, no state.
//
// `static_w` is the node's static power attributed to the task (the node's
// static power times the task's share of its GPUs): the task holds it for
// as long as it runs, whatever the cap, so a slower cap costs that much more
// energy per unit of work. Every objective below counts it: power_w is
// taken as power_w + static_w. 0 leaves only the devices' power.
//
// With e(c) = power_w / throughput (energy per unit of work), t(c) =
// 1 / throughput (time per unit of work), and T_fast = t at the fastest point:
//   0. no goal (the default): minimum e(c), the job's least energy (with
//      static_w counted, GPUs plus its share of the node), as eta = 1 below.
//   1. max_slowdown s: minimum e(c) among points with t(c) <= s * T_fast.
//      The fastest point always qualifies.
//   2. energy_time_weight eta in [0, 1]: minimum of Zeus's cost
//        eta * e(c) + (1 - eta) * p_max_w * t(c)
//      (Jae-Won Chung et al., "Zeus: Understanding and Optimizing GPU Energy
//      Consumption of DNN Training", NSDI 2023: cost = eta*E + (1-eta)*P_max*T;
//      per unit of work here, which ranks caps identically because the work
//      to do does not depend on the cap).
//   3. deadline D: minimum e(c) among points with remaining_work * t(c) <=
//      D - now. If none qualifies, the fastest point with objective_met =
//      false and a reason saying by how much it misses.
// Ties (equal cost within a relative 1e-9) go to the higher cap, i.e. the
// faster one. Constraints are also checked with a relative 1e-9 slack so that
// a point exactly on a limit is not lost to rounding.
//
// INVALID_ARGUMENT for: an empty profile; a point with a non-finite or
// non-positive cap_w, throughput or power_w; two points with the same cap;
// a non-finite or non-positive p_max_w; a non-finite or negative
// remaining_work or static_w; max_slowdown below 1 or non-finite;
// energy_time_weight outside [0, 1]; a deadline timestamp with nanos outside
// [0, 1e9).
absl::StatusOr<CapDecision> ChooseCap(const std::vector<CapPoint>& profile,
                                      const v1::Objective& objective,
                                      double p_max_w, double remaining_work,
                                      absl::Time now, double static_w = 0);

// INVALID_ARGUMENT, naming the offending point, unless every point has
// finite, positive cap_w, throughput and power_w and no cap repeats. An
// empty profile is valid here (ChooseCap refuses it separately).
absl::Status ValidateProfile(const std::vector<CapPoint>& profile);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PROFILING_CAP_CHOICE_H_
