#ifndef JOULE_SCHEDULER_BRAIN_ENERGY_BUDGET_H_
#define JOULE_SCHEDULER_BRAIN_ENERGY_BUDGET_H_

// Energy budgets (JobSpec.energy_budget_j): projects a running job's whole
// energy and says when its caps must step down. The projection is what the
// job has spent (every attempt) plus the current attempt's remaining work
// at the joules per sample it has shown so far; the remaining work is known
// only when every replica reports its total (`total=`), and without it the
// projection is what is already spent. Steps are paced, one per
// `step_interval` per job, so that the lower cap shows in the measurements
// before the next. The caller lowers the caps, reports the step with
// `Stepped`, and gives up (the job is over budget) when no cap can go lower.
//
// Threading: not thread-safe; owned by the scheduler and used under its lock.

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"

namespace joule {

struct BudgetCheck {
  // True when the projection is above the budget and a step is due now.
  bool step_down = false;
  double projected_j = 0;
  double budget_j = 0;
  // Whether every replica of the attempt reports its total work.
  bool total_known = false;
};

class EnergyBudgetGuard {
 public:
  explicit EnergyBudgetGuard(absl::Duration step_interval = absl::Seconds(5))
      : step_interval_(step_interval) {}

  // The job's projection against its budget. Never steps a job without a
  // budget or already marked over budget.
  BudgetCheck Check(const v1::Job& job, absl::Time now) const;

  // The caller lowered the job's caps at `now`.
  void Stepped(const std::string& job_id, absl::Time now) { last_step_[job_id] = now; }
  // Forgets a job (it ended, or its budget cannot be met).
  void Forget(const std::string& job_id) { last_step_.erase(job_id); }

  size_t jobs() const { return last_step_.size(); }

 private:
  absl::Duration step_interval_;
  absl::flat_hash_map<std::string, absl::Time> last_step_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_BRAIN_ENERGY_BUDGET_H_
