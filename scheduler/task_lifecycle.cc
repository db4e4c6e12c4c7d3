#include "scheduler/task_lifecycle.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spec/job_validation.h"

namespace joule {

TaskEnding EndingOf(const v1::TaskEvent& event, absl::string_view node) {
  const bool start_failed = event.kind() == v1::TaskEvent::KIND_START_FAILED;
  if (start_failed && event.node_busy()) {
    // The node's state, not the task's fault: lost, so retried.
    return {v1::TASK_STATE_LOST,
            absl::StrCat("node ", node, " could not take it: ", event.message())};
  }
  if (start_failed) {
    return {v1::TASK_STATE_FAILED, absl::StrCat("could not start: ", event.message())};
  }
  if (event.stopped()) return {v1::TASK_STATE_KILLED, "stopped by the scheduler"};
  if (event.exit_code() == 0) return {v1::TASK_STATE_SUCCEEDED, ""};
  if (event.signal() != 0) {
    return {v1::TASK_STATE_FAILED, absl::StrCat("killed by signal ", event.signal())};
  }
  return {v1::TASK_STATE_FAILED, absl::StrCat("exited with code ", event.exit_code())};
}

std::string TaskEndReason(v1::TaskState state) {
  switch (state) {
    case v1::TASK_STATE_SUCCEEDED:
      return "TaskSucceeded";
    case v1::TASK_STATE_KILLED:
      return "TaskKilled";
    case v1::TASK_STATE_LOST:
      return "TaskLost";
    default:
      return "TaskFailed";
  }
}

AttemptTally TallyAttempt(const v1::Job& job) {
  AttemptTally tally;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != job.attempts()) continue;
    ++tally.total;
    switch (task.state()) {
      case v1::TASK_STATE_STARTING:
        ++tally.starting;
        ++tally.active;
        break;
      case v1::TASK_STATE_RUNNING:
        ++tally.active;
        break;
      case v1::TASK_STATE_SUCCEEDED:
        ++tally.succeeded;
        break;
      case v1::TASK_STATE_FAILED:
        if (tally.failed == nullptr) tally.failed = &task;
        break;
      case v1::TASK_STATE_LOST:
        if (tally.lost == nullptr) tally.lost = &task;
        break;
      default:
        break;
    }
  }
  return tally;
}

RetryDecision DecideRetry(const v1::Job& job, const v1::Task& cause) {
  v1::RestartPolicy policy = job.spec().restart_policy();
  ApplyRestartPolicyDefaults(&policy);
  const bool lost = cause.state() == v1::TASK_STATE_LOST;
  const std::string what =
      lost ? absl::StrCat("task ", cause.task_id(), " lost (", cause.message(), ")")
           : absl::StrCat("task ", cause.task_id(), " ", cause.message());
  const v1::RetryOn ending = lost ? v1::RETRY_ON_LOST : v1::RETRY_ON_FAILED;
  RetryDecision decision;
  if (std::find(policy.retry_on().begin(), policy.retry_on().end(), ending) ==
      policy.retry_on().end()) {
    decision.message =
        lost ? absl::StrCat(what, "; lost tasks are not retried (restart_policy.retry_on)")
             : what;
    return decision;
  }
  if (job.retries() >= policy.max_retries()) {
    decision.message =
        policy.max_retries() == 0
            ? absl::StrCat(what, "; no retries allowed (restart_policy.max_retries: 0)")
            : absl::StrFormat("%s; %d retries exhausted", what, policy.max_retries());
    return decision;
  }
  // Doubling stops at the cap, so the loop is short and cannot overflow.
  double wait_s = policy.backoff_s();
  for (int i = 0; i < job.retries() && wait_s < policy.max_backoff_s(); ++i) wait_s *= 2;
  decision.retry = true;
  decision.wait = absl::Seconds(std::min(wait_s, policy.max_backoff_s()));
  decision.message = absl::StrFormat(
      "%s; retry %d of %d %s", what, job.retries() + 1, policy.max_retries(),
      decision.wait == absl::ZeroDuration()
          ? "now"
          : absl::StrCat("in ", absl::FormatDuration(decision.wait)));
  return decision;
}

void CopyUsage(const v1::TaskUsage& usage, v1::Task* task) {
  *task->mutable_energy() = usage.energy();
  task->set_samples_done(usage.samples_done());
  task->set_steps_done(usage.steps_done());
  if (usage.has_quality()) task->set_quality(usage.quality());
  task->set_target_reached(usage.target_reached());
  task->set_shards_done(usage.shards_done());
  task->set_samples_total(usage.samples_total());
  task->set_waiting_for_shards(usage.waiting_for_shards());
}

void SumEnergy(v1::Job& job) {
  v1::Energy total;
  for (const v1::Task& task : job.tasks()) {
    total.set_gpu_j(total.gpu_j() + task.energy().gpu_j());
    total.set_cpu_j(total.cpu_j() + task.energy().cpu_j());
    total.set_static_j(total.static_j() + task.energy().static_j());
    total.set_total_j(total.total_j() + task.energy().total_j());
  }
  *job.mutable_energy() = total;
}

}  // namespace joule
