#ifndef JOULE_SCHEDULER_TELEMETRY_GUARD_H_
#define JOULE_SCHEDULER_TELEMETRY_GUARD_H_

#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/device_catalog.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"

namespace joule {

// Why telemetry was refused: the `reason` label of
// joule_telemetry_rejected_total.
enum class TelemetryRejection {
  kNotFinite,              // "not_finite": NaN or infinite.
  kNegative,               // "negative": power, energy, a cap or a clock < 0.
  kPowerAboveMax,          // "power_above_max": more than the device can draw.
  kTemperatureOutOfRange,  // "temperature_out_of_range".
  kUtilizationOutOfRange,  // "utilization_out_of_range": outside [0, 1].
  kEnergyBackwards,        // "energy_backwards": a counter went back.
  kEnergyAboveMax,         // "energy_above_max": more than could be drawn.
};

inline constexpr TelemetryRejection kTelemetryRejections[] = {
    TelemetryRejection::kNotFinite,
    TelemetryRejection::kNegative,
    TelemetryRejection::kPowerAboveMax,
    TelemetryRejection::kTemperatureOutOfRange,
    TelemetryRejection::kUtilizationOutOfRange,
    TelemetryRejection::kEnergyBackwards,
    TelemetryRejection::kEnergyAboveMax,
};

// The label value ("not_finite", ...).
absl::string_view TelemetryRejectionLabel(TelemetryRejection reason);

// A refusal: the reason and what was wrong, for the log
// (e.g. "GPU 0: power_w 1e+12 above 500 W").
struct TelemetryProblem {
  TelemetryRejection reason;
  std::string detail;
};

// What counts as physically possible.
struct TelemetryLimits {
  // A device's ceiling: this many times its registered maximum power limit,
  // or its catalog model's when it registered none...
  double device_ceiling_factor = 2;
  // ...and never more than this (nor for a device of unknown limits).
  double max_device_power_w = 10000;
  // A node's ceiling adds twice its static power (itself at most
  // max_device_power_w) and this, for parts that no device reports.
  double node_headroom_w = 1000;
  double min_temp_c = -40;
  double max_temp_c = 150;
  // Energy may run this far ahead of ceiling x elapsed time: reports are
  // sampled on the agent's clock and arrive on the scheduler's.
  absl::Duration energy_grace = absl::Seconds(30);
};

// Decides which agent telemetry is physically possible, so that the
// impossible never reaches accounting (job energy, kWh, CO2e, the node's
// power, the exported totals). The scheduler drops what it refuses, counts
// it per node and reason, and logs the first of each (FirstOf).
//
// 1. Register(node): each device's ceiling is device_ceiling_factor x its
//    registered maximum power limit (the catalog's for a GPU that reported
//    none; max_device_power_w when neither is known), capped at
//    max_device_power_w. The node's ceiling is the sum of its devices',
//    plus twice its static power, plus node_headroom_w. Registering (an
//    agent that started again) also forgets the energy counters' baselines.
// 2. CheckSample refuses a whole NodeSample, task usages included (they are
//    attributed from the same readings), when any device has a NaN or
//    infinite value, a negative power, energy, cap or clock, power or cap
//    above its ceiling, a temperature outside [min_temp_c, max_temp_c] or a
//    utilization outside [0, 1]; or when the node's power is not finite,
//    negative or above the node's ceiling.
// 3. Energy counters (cumulative since the agent started): between two
//    accepted samples a counter may rise by at most ceiling x (elapsed +
//    energy_grace) ("energy_above_max"). A lower reading is a counter that
//    started again (an agent restart, a wrap) when it is no more than a
//    fresh count could be, ceiling x (elapsed + energy_grace): it becomes
//    the new baseline. Anything higher went backwards
//    ("energy_backwards"). A refused sample leaves the baselines alone, so
//    as time passes the allowance grows and a counter that really jumped
//    is taken again.
// 4. CheckTaskEnergy refuses a task's reported energy when a component or
//    the total is NaN, infinite or negative, when the total is below what
//    has been accounted already (task energy is cumulative and only grows),
//    or when the total or the components' sum is above what the node could
//    have drawn since the job was submitted: node ceiling x (since +
//    energy_grace).
//
// Pure: no clock (callers pass the time), no I/O. Owned by the scheduler
// and guarded by its lock; not thread-safe.
class TelemetryGuard {
 public:
  explicit TelemetryGuard(std::vector<GpuModelSpec> catalog, TelemetryLimits limits = {});

  // The node's ceilings from its registration, and fresh counter baselines.
  void Register(const v1::NodeInfo& node);

  // Steps 2 and 3; an accepted sample's counters become the baselines.
  // `now` is when the sample arrived.
  absl::optional<TelemetryProblem> CheckSample(const std::string& node,
                                               const v1::NodeSample& sample, absl::Time now);

  // Step 4. `accounted`: the task's energy so far; `since_submit`: how long
  // ago its job was submitted.
  absl::optional<TelemetryProblem> CheckTaskEnergy(const std::string& node,
                                                   const v1::Energy& reported,
                                                   const v1::Energy& accounted,
                                                   absl::Duration since_submit) const;

  // Notes a refusal; true the first time for this node and reason (the
  // scheduler logs only then).
  bool FirstOf(const std::string& node, TelemetryRejection reason);

  // The ceilings in force (for tests and messages).
  double DeviceCeilingW(const std::string& node, v1::DeviceKind kind, int32_t index) const;
  double NodeCeilingW(const std::string& node) const;

 private:
  using DeviceKey = std::pair<int, int32_t>;  // (kind, index)
  struct Baseline {
    double energy_j = 0;
    absl::Time at;
  };
  struct NodeState {
    // False for a node only seen through FirstOf or CheckSample.
    bool registered = false;
    absl::flat_hash_map<DeviceKey, double> device_ceiling_w;
    double node_ceiling_w = 0;
    absl::flat_hash_map<DeviceKey, Baseline> counters;
    std::set<TelemetryRejection> logged;
  };

  const NodeState* Find(const std::string& node) const;
  // The ceilings of `state` (nullptr: a node never seen).
  double DeviceCeilingW(const NodeState* state, v1::DeviceKind kind, int32_t index) const;
  double NodeCeilingW(const NodeState* state) const;
  absl::optional<TelemetryProblem> CheckDevice(const v1::DeviceSample& device,
                                               double ceiling_w) const;

  const std::vector<GpuModelSpec> catalog_;
  const TelemetryLimits limits_;
  // Node states are looked up once per telemetry report: hashed, and
  // node-based so that a state's address survives other nodes' insertion.
  absl::node_hash_map<std::string, NodeState> nodes_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_TELEMETRY_GUARD_H_
