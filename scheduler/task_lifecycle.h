#ifndef JOULE_SCHEDULER_TASK_LIFECYCLE_H_
#define JOULE_SCHEDULER_TASK_LIFECYCLE_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"

namespace joule {

// The rules of the task and attempt life cycle, as pure functions of a job
// and what its agents reported; the Scheduler applies their verdicts
// (stops, retries, events, stores).
//
//   task:    STARTING -> RUNNING -> SUCCEEDED | FAILED | KILLED | LOST
//   attempt: all tasks succeeded -> the job SUCCEEDED; a failed or lost
//            task (or a cancel) stops its siblings, and once none is active
//            the job is retried (restart policy) or FAILED / CANCELLED.
//
// Thread-compatible: no state.

inline bool IsFinalJobState(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

// How a task ended, from the agent's final event (EXITED or START_FAILED)
// on `node`.
struct TaskEnding {
  v1::TaskState state = v1::TASK_STATE_UNSPECIFIED;
  // Empty for a clean exit.
  std::string message;
};
TaskEnding EndingOf(const v1::TaskEvent& event, absl::string_view node);

// The job event's reason for a task that ended in `state`: "TaskSucceeded",
// "TaskKilled", "TaskLost" or "TaskFailed".
std::string TaskEndReason(v1::TaskState state);

// The tasks of the job's latest attempt, by state.
struct AttemptTally {
  int total = 0;
  // STARTING or RUNNING.
  int active = 0;
  int starting = 0;
  int succeeded = 0;
  // The first failed and the first lost task, if any.
  const v1::Task* failed = nullptr;
  const v1::Task* lost = nullptr;
};
AttemptTally TallyAttempt(const v1::Job& job);

// What the restart policy makes of an attempt that ended with `cause`
// (a failed or lost task): a retry after `wait`, or the job fails. Specs
// stored before restart policies existed get the defaults.
struct RetryDecision {
  bool retry = false;
  // backoff_s x 2^(retries used), at most max_backoff_s.
  absl::Duration wait;
  // The job's message: what ended, and the retry ("retry 2 of 3 in 4s") or
  // why there is none.
  std::string message;
};
RetryDecision DecideRetry(const v1::Job& job, const v1::Task& cause);

// What an agent reports about a running task, into the task (its energy
// included; the caller keeps the accounted energy when the telemetry guard
// refuses the reported one).
void CopyUsage(const v1::TaskUsage& usage, v1::Task* task);

// The job's energy: the sum over all its tasks, every attempt.
void SumEnergy(v1::Job& job);

}  // namespace joule

#endif  // JOULE_SCHEDULER_TASK_LIFECYCLE_H_
