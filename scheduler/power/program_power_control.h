#ifndef JOULE_SCHEDULER_POWER_PROGRAM_POWER_CONTROL_H_
#define JOULE_SCHEDULER_POWER_PROGRAM_POWER_CONTROL_H_

// The real NodePowerControl: runs the configured suspend and resume programs
// (Slurm's SuspendProgram / ResumeProgram) with the node's name as their only
// argument, no shell. Deployments point them at IPMI, Redfish or a cloud API
// (deploy/power/ has an example). The programs run one at a time on this
// class's own thread, so Suspend and Resume return at once, as the
// scheduler's lock requires. A program that fails, or runs past `timeout`
// (then killed), is logged; the scheduler notices a node that does not go
// down or come back through NodePowerManager's timeouts. The latest command
// for a node replaces one still queued for it.
//
// Threading: Suspend, Resume and WaitIdle are thread-safe. The destructor
// waits for the program running now and drops the queued ones.

#include <deque>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scheduler/power/node_power_manager.h"

namespace joule {

// Runs `program node` and waits for it, at most `timeout` (then SIGKILL).
// OK when it exits 0; otherwise says how it ended.
absl::Status RunPowerProgram(const std::string& program, const std::string& node,
                             absl::Duration timeout);

class ProgramPowerControl : public NodePowerControl {
 public:
  struct Options {
    std::string suspend_program;
    std::string resume_program;
    absl::Duration timeout = absl::Minutes(2);
  };

  explicit ProgramPowerControl(Options options);
  ~ProgramPowerControl() override;

  void Suspend(const std::string& node) override;
  void Resume(const std::string& node) override;

  // Blocks until every queued program has run (tests, shutdown).
  void WaitIdle();
  // Programs that failed or timed out since start.
  int failures() const;

 private:
  void Enqueue(const std::string& program, const std::string& node);
  void Loop();

  const Options options_;
  mutable absl::Mutex mu_;
  // (program, node) in order.
  std::deque<std::pair<std::string, std::string>> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_POWER_PROGRAM_POWER_CONTROL_H_
