// joule-sim's engine: a discrete-event simulation that runs the real
// scheduler core (joule::Scheduler: placement pipeline, cap profiler, power
// controller, batch-size bandit, sharder) on a virtual clock, with simulated
// agents on the other end of its AgentLink. The agents register, send
// telemetry, task events and final usage exactly as real ones do; the
// scheduler is only ever called through the same entry points the gRPC
// services use (SubmitJob, OnAgentRegister, OnAgentMessage, Tick).
//
// Simulated hardware (sim/README.md): per GPU, power is piecewise constant
// between events (a task start or end, a cap change), taken from the measured
// tables through WorkModel; an idle GPU draws its catalog idle power; each node
// draws its configured static power at all times. Energy is integrated exactly
// over those pieces.
//
// Events, in virtual-time order (ties: insertion order): job arrivals from
// the trace; job completions; per-node telemetry every telemetry_period
// (staggered), plus a burst every burst_period for burst_length after a task
// starts or a cap changes on the node (a real agent samples every second or
// so, which is what profiling windows need; sampling a whole cluster that
// often for months of virtual time would dominate the run); scheduler ticks
// after every event that can free or need resources and every tick_period.
//
// Single-threaded; one Simulator runs one policy once.
#ifndef JOULE_SIM_ENGINE_SIMULATOR_H_
#define JOULE_SIM_ENGINE_SIMULATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/device_catalog.h"
#include "sim/engine/work_model.h"
#include "sim/report/report.h"
#include "sim/trace/cluster_config.h"

namespace joule::sim {

enum class Policy { kBaseline, kCapOnly, kJoule };

// "baseline", "cap-only", "joule".
std::string PolicyName(Policy policy);
absl::StatusOr<Policy> ParsePolicy(const std::string& name);

struct SimOptions {
  Policy policy = Policy::kJoule;
  // Seeds the scheduler's random choices.
  uint64_t seed = 1;
  absl::Duration telemetry_period = absl::Minutes(5);
  absl::Duration burst_period = absl::Seconds(5);
  absl::Duration burst_length = absl::Seconds(30);
  absl::Duration tick_period = absl::Minutes(1);
  // Joule: SchedulerOptions::caps_count_static_power (cap-only never counts
  // it: it is Zeus's GPU-only power-limit optimizer).
  bool caps_count_static_power = true;
  // Joule's jobs ask for max_slowdown instead of the default objective (the
  // least total energy); 0: the default.
  double max_slowdown = 0;
  // Joule's jobs declare expected_samples: their true work at the default
  // batch size times a log-normal error, exp(N(0, size_error^2)) drawn per
  // job from (seed, job id): a user's estimate from earlier runs. 0: exact.
  // Negative: the jobs declare no size.
  double size_error = 0.5;
  // Idle power management (SchedulerOptions::node_power): nodes idle for
  // suspend_after are suspended (0: never); a suspended node draws
  // standby_power_w in all (its GPUs nothing) and takes resume_time to come
  // back, drawing its full static power and idle GPU power while it boots. The defaults: Slurm's SuspendTime is commonly minutes; a server in
  // soft-off (ACPI S5) draws a few watts to tens of watts for its BMC and
  // NICs; a cold boot of a GPU server takes minutes.
  absl::Duration suspend_after = absl::ZeroDuration();
  double standby_power_w = 20;
  absl::Duration resume_time = absl::Minutes(5);
  // The GPU models' published characteristics (power limits, idle power,
  // memory): the built-in catalog, or joule-sim --gpu-catalog's.
  std::vector<GpuModelSpec> gpu_catalog = GpuCatalog();
  // Keep every GPU's (time, power) steps, for the conservation test.
  bool record_power_steps = false;
  // Stop after this much virtual time past the last arrival (jobs still
  // running then are reported unfinished).
  absl::Duration drain_limit = absl::Hours(24 * 3650);
};

// One GPU's power history: power_w holds from time_s until the next step.
struct PowerStep {
  double time_s = 0;
  double power_w = 0;
};

struct DeviceEnergy {
  std::string node;
  int32_t index = 0;
  double energy_j = 0;               // integrated by the simulator
  std::vector<PowerStep> steps;      // with record_power_steps
};

class Simulator {
 public:
  // `model` must outlive the simulator. Jobs must be sorted by arrival.
  Simulator(const WorkModel* model, ClusterConfig cluster, std::vector<SimJob> jobs,
            SimOptions options);
  ~Simulator();

  // Runs the whole trace. Errors: the scheduler refusing a node or a job,
  // or missing table data.
  absl::StatusOr<PolicyRun> Run();

  // After Run(): every GPU's integrated energy (and steps, if recorded), up
  // to the end of the run.
  std::vector<DeviceEnergy> Devices() const;
  // Cap changes the simulated GPUs received (for tests).
  int64_t cap_changes() const;
  // Nodes suspended and resumed by idle power management (for tests).
  int64_t suspends() const;
  int64_t resumes() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace joule::sim

#endif  // JOULE_SIM_ENGINE_SIMULATOR_H_
