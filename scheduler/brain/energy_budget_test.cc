#include "scheduler/brain/energy_budget.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// A job with a budget, on its second attempt: 100 J spent in all, of which
// the current attempt's one replica spent 40 J for `done` of `total` samples.
v1::Job Job(double budget_j, double done, double total) {
  v1::Job job;
  job.set_id("job-1");
  job.set_attempts(2);
  job.mutable_spec()->set_energy_budget_j(budget_j);
  job.mutable_energy()->set_total_j(100);
  v1::Task* old = job.add_tasks();
  old->set_attempt(1);
  old->set_samples_done(1e6);
  old->mutable_energy()->set_total_j(60);
  v1::Task* task = job.add_tasks();
  task->set_attempt(2);
  task->set_samples_done(done);
  task->set_samples_total(total);
  task->mutable_energy()->set_total_j(40);
  return job;
}

TEST(EnergyBudgetGuardTest, ProjectsTheRestOfTheAttemptAtItsCostSoFar) {
  EnergyBudgetGuard guard;
  // 40 J for 100 of 400 samples: 120 J to go, 220 J in all.
  BudgetCheck check = guard.Check(Job(300, 100, 400), kNow);
  EXPECT_DOUBLE_EQ(check.projected_j, 220);
  EXPECT_TRUE(check.total_known);
  EXPECT_FALSE(check.step_down);
  check = guard.Check(Job(200, 100, 400), kNow);
  EXPECT_TRUE(check.step_down);
  EXPECT_DOUBLE_EQ(check.budget_j, 200);
}

TEST(EnergyBudgetGuardTest, WithoutATotalOnlyWhatIsSpentCounts) {
  EnergyBudgetGuard guard;
  BudgetCheck check = guard.Check(Job(150, 100, 0), kNow);
  EXPECT_FALSE(check.total_known);
  EXPECT_DOUBLE_EQ(check.projected_j, 100);
  EXPECT_FALSE(check.step_down);
  EXPECT_TRUE(guard.Check(Job(90, 100, 0), kNow).step_down);
}

TEST(EnergyBudgetGuardTest, StepsArePacedAndEndedJobsForgotten) {
  EnergyBudgetGuard guard(absl::Seconds(5));
  const v1::Job job = Job(200, 100, 400);
  ASSERT_TRUE(guard.Check(job, kNow).step_down);
  guard.Stepped(job.id(), kNow);
  EXPECT_FALSE(guard.Check(job, kNow + absl::Seconds(4)).step_down);
  EXPECT_TRUE(guard.Check(job, kNow + absl::Seconds(5)).step_down);
  guard.Forget(job.id());
  EXPECT_EQ(guard.jobs(), 0u);
  EXPECT_TRUE(guard.Check(job, kNow + absl::Seconds(1)).step_down);
}

TEST(EnergyBudgetGuardTest, NoBudgetOrOverBudgetNeverSteps) {
  EnergyBudgetGuard guard;
  EXPECT_FALSE(guard.Check(Job(0, 100, 400), kNow).step_down);
  v1::Job over = Job(10, 100, 400);
  over.set_over_budget(true);
  EXPECT_FALSE(guard.Check(over, kNow).step_down);
}

}  // namespace
}  // namespace joule
