#ifndef JOULE_SCHEDULER_POWER_NODE_POWER_MANAGER_H_
#define JOULE_SCHEDULER_POWER_NODE_POWER_MANAGER_H_

// Cluster-level idle power management, as Slurm's power saving does
// (slurm.conf SuspendProgram / ResumeProgram / SuspendTime / ResumeTimeout):
// nodes idle for longer than `suspend_after` are suspended through a
// configured command and resumed through another when work needs them.
//
// This class only decides and remembers; it runs nothing. The scheduler
// calls it under its lock and hands the decisions to a NodePowerControl,
// which must not block (the real one runs the programs on its own thread,
// the simulator's schedules virtual events).
//
// Life cycle of a node:
//   awake --(idle >= suspend_after, no tasks)--> suspending
//   suspending --(its agent disconnects or says it is going down)--> suspended
//   suspending --(still connected after resume_timeout)--> awake (the suspend
//                did not take; logged by the scheduler)
//   suspended --(work needs it: RequestResume)--> resuming
//   resuming --(its agent registers)--> awake
//   resuming --(no registration within resume_timeout)--> failed: the
//                scheduler marks the node down, and its pending work goes
//                elsewhere. A failed node that registers later is awake.
// A node is never suspended while it runs a task or holds GPUs for one: the
// scheduler only offers nodes with no tasks, and `Idle` must be called again
// after every task ends (the idle clock restarts then).
//
// Threading: not thread-safe; owned by the scheduler and used under its lock.

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace joule {

// Runs the suspend and resume commands. Called under the scheduler's lock:
// implementations must return at once and do the work elsewhere.
class NodePowerControl {
 public:
  virtual ~NodePowerControl() = default;
  virtual void Suspend(const std::string& node) = 0;
  virtual void Resume(const std::string& node) = 0;
};

struct NodePowerOptions {
  // Idle time after which a node is suspended (Slurm's SuspendTime);
  // zero or less: power management off.
  absl::Duration suspend_after = absl::ZeroDuration();
  // How long a resume may take before the node is marked down (Slurm's
  // ResumeTimeout); also how long a suspend may leave the agent connected.
  absl::Duration resume_timeout = absl::Minutes(10);
  // Idle GPUs kept awake for arriving work, whatever the idle time: the
  // most idle nodes are suspended first, never below this many idle GPUs.
  int keep_idle_gpus = 0;
};

class NodePowerManager {
 public:
  enum class State { kAwake, kSuspending, kSuspended, kResuming, kFailed };

  explicit NodePowerManager(NodePowerOptions options) : options_(options) {}

  bool enabled() const { return options_.suspend_after > absl::ZeroDuration(); }
  const NodePowerOptions& options() const { return options_; }

  // The node's agent registered (coming up): awake, idle from `now` if it
  // has no tasks (`idle`).
  void Registered(const std::string& node, bool idle, absl::Time now);
  // The node has no tasks since `now` (called when its last task ends), or
  // got one (`idle` false).
  void SetIdle(const std::string& node, bool idle, absl::Time now);
  // Work is waiting to start on this awake node (a job whose other nodes
  // are resuming): its idle clock restarts at `now`, so it is not suspended
  // before the work can start. No effect on a node that is not awake.
  void Hold(const std::string& node, absl::Time now);
  // The node's agent is gone (stream closed, or it said it is going down).
  // True when that was expected (the node was being suspended).
  bool Disconnected(const std::string& node);
  // A node a previous scheduler suspended (from the store): suspended.
  void RestoreSuspended(const std::string& node, absl::Time now);

  // Nodes to suspend now: awake, idle for at least suspend_after, most idle
  // first, leaving at least keep_idle_gpus idle GPUs awake. `eligible` holds
  // the nodes that may be suspended now (connected, no tasks) with their GPU
  // counts; no other node is considered. The chosen become suspending.
  std::vector<std::string> ChooseToSuspend(absl::Time now,
                                           const std::map<std::string, int>& eligible);
  // Asks for a suspended node to come up; false if it is not suspended
  // (awake, already resuming, or unknown).
  bool RequestResume(const std::string& node, absl::Time now);
  // Suspending nodes still connected after resume_timeout go back to awake;
  // resuming nodes past resume_timeout become failed. Returns the failed.
  struct Expired {
    std::vector<std::string> suspend_failed;
    std::vector<std::string> resume_failed;
  };
  Expired Expire(absl::Time now);

  State state(const std::string& node) const;
  // Suspended or resuming: not running, but placement may wake it.
  bool Asleep(const std::string& node) const;
  // Counts per state, for metrics.
  std::map<State, int> Counts() const;

 private:
  struct NodeState {
    State state = State::kAwake;
    // When the node became idle (awake), or entered its current state.
    absl::Time since;
    bool idle = false;
  };

  NodePowerOptions options_;
  std::map<std::string, NodeState> nodes_;
};

// "awake", "suspending", "suspended", "resuming", "failed".
const char* NodePowerStateName(NodePowerManager::State state);

}  // namespace joule

#endif  // JOULE_SCHEDULER_POWER_NODE_POWER_MANAGER_H_
