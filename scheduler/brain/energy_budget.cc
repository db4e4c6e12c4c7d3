#include "scheduler/brain/energy_budget.h"

namespace joule {

BudgetCheck EnergyBudgetGuard::Check(const v1::Job& job, absl::Time now) const {
  BudgetCheck check;
  check.budget_j = job.spec().energy_budget_j();
  if (check.budget_j <= 0 || job.over_budget()) return check;
  double samples = 0, total = 0, attempt_j = 0;
  check.total_known = true;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != job.attempts()) continue;
    samples += task.samples_done();
    attempt_j += task.energy().total_j();
    if (task.samples_total() <= 0) check.total_known = false;
    total += task.samples_total();
  }
  check.projected_j = job.energy().total_j();
  if (check.total_known && samples > 0 && total > samples) {
    check.projected_j += (total - samples) * attempt_j / samples;
  }
  if (check.projected_j <= check.budget_j) return check;
  auto last = last_step_.find(job.id());
  check.step_down = last == last_step_.end() || now - last->second >= step_interval_;
  return check;
}

}  // namespace joule
