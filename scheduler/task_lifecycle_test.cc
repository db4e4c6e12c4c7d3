#include "scheduler/task_lifecycle.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"

namespace joule {
namespace {

// ---- IsFinalJobState, EndingOf, TaskEndReason ----

TEST(IsFinalJobStateTest, Table) {
  const std::vector<std::pair<v1::JobState, bool>> cases = {
      {v1::JOB_STATE_UNSPECIFIED, false}, {v1::JOB_STATE_PENDING, false},
      {v1::JOB_STATE_RUNNING, false},     {v1::JOB_STATE_SUCCEEDED, true},
      {v1::JOB_STATE_FAILED, true},       {v1::JOB_STATE_CANCELLED, true},
  };
  for (const auto& [state, is_final] : cases) {
    EXPECT_EQ(IsFinalJobState(state), is_final) << v1::JobState_Name(state);
  }
}

v1::TaskEvent Exited(int32_t exit_code, int32_t signal = 0) {
  v1::TaskEvent event;
  event.set_task_id("job-1.r0.a1");
  event.set_job_id("job-1");
  event.set_kind(v1::TaskEvent::KIND_EXITED);
  event.set_exit_code(exit_code);
  event.set_signal(signal);
  return event;
}

v1::TaskEvent Stopped(int32_t exit_code, int32_t signal = 0) {
  v1::TaskEvent event = Exited(exit_code, signal);
  event.set_stopped(true);
  return event;
}

v1::TaskEvent StartFailed(const std::string& message, bool node_busy = false) {
  v1::TaskEvent event;
  event.set_task_id("job-1.r0.a1");
  event.set_job_id("job-1");
  event.set_kind(v1::TaskEvent::KIND_START_FAILED);
  event.set_message(message);
  event.set_node_busy(node_busy);
  return event;
}

TEST(EndingOfTest, Table) {
  struct Case {
    std::string name;
    v1::TaskEvent event;
    v1::TaskState state;
    std::string message;
  };
  v1::TaskEvent busy_exit = Exited(0);
  busy_exit.set_node_busy(true);
  const std::vector<Case> cases = {
      {"clean exit", Exited(0), v1::TASK_STATE_SUCCEEDED, ""},
      {"exit code 3", Exited(3), v1::TASK_STATE_FAILED, "exited with code 3"},
      {"killed by a signal", Exited(137, 9), v1::TASK_STATE_FAILED, "killed by signal 9"},
      {"stopped by the scheduler", Stopped(143, 15), v1::TASK_STATE_KILLED,
       "stopped by the scheduler"},
      {"stopped, and exited 0", Stopped(0), v1::TASK_STATE_KILLED, "stopped by the scheduler"},
      {"could not start", StartFailed("exec: no such file"), v1::TASK_STATE_FAILED,
       "could not start: exec: no such file"},
      {"node busy: lost, retried elsewhere", StartFailed("GPU 1 is held by pod ml/infer-0", true),
       v1::TASK_STATE_LOST, "node gpu-a could not take it: GPU 1 is held by pod ml/infer-0"},
      {"node_busy means nothing on an exit", busy_exit, v1::TASK_STATE_SUCCEEDED, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const TaskEnding ending = EndingOf(c.event, "gpu-a");
    EXPECT_EQ(ending.state, c.state) << v1::TaskState_Name(ending.state);
    EXPECT_EQ(ending.message, c.message);
  }
}

TEST(TaskEndReasonTest, Table) {
  const std::vector<std::pair<v1::TaskState, std::string>> cases = {
      {v1::TASK_STATE_SUCCEEDED, "TaskSucceeded"},
      {v1::TASK_STATE_FAILED, "TaskFailed"},
      {v1::TASK_STATE_KILLED, "TaskKilled"},
      {v1::TASK_STATE_LOST, "TaskLost"},
  };
  for (const auto& [state, reason] : cases) {
    EXPECT_EQ(TaskEndReason(state), reason) << v1::TaskState_Name(state);
  }
}

// ---- TallyAttempt ----

TEST(TallyAttemptTest, Table) {
  struct Case {
    std::string name;
    int32_t attempts;
    // (attempt, state) of each task, oldest first.
    std::vector<std::pair<int32_t, v1::TaskState>> tasks;
    int total;
    int active;
    int starting;
    int succeeded;
    // Index into `tasks` of the first failed and first lost task; -1: none.
    int failed;
    int lost;
  };
  const std::vector<Case> cases = {
      {"no attempt yet", 0, {}, 0, 0, 0, 0, -1, -1},
      {"starting and running are active",
       1,
       {{1, v1::TASK_STATE_STARTING}, {1, v1::TASK_STATE_RUNNING}, {1, v1::TASK_STATE_RUNNING}},
       3,
       3,
       1,
       0,
       -1,
       -1},
      {"only the latest attempt counts",
       2,
       {{1, v1::TASK_STATE_FAILED},
        {1, v1::TASK_STATE_LOST},
        {1, v1::TASK_STATE_SUCCEEDED},
        {2, v1::TASK_STATE_STARTING},
        {2, v1::TASK_STATE_SUCCEEDED}},
       2,
       1,
       1,
       1,
       -1,
       -1},
      {"the first failed and the first lost",
       1,
       {{1, v1::TASK_STATE_SUCCEEDED},
        {1, v1::TASK_STATE_FAILED},
        {1, v1::TASK_STATE_LOST},
        {1, v1::TASK_STATE_FAILED},
        {1, v1::TASK_STATE_LOST},
        {1, v1::TASK_STATE_KILLED}},
       6,
       0,
       0,
       1,
       1,
       2},
      {"an earlier attempt's failure is not the latest's",
       2,
       {{1, v1::TASK_STATE_FAILED},
        {1, v1::TASK_STATE_LOST},
        {2, v1::TASK_STATE_RUNNING},
        {2, v1::TASK_STATE_LOST},
        {2, v1::TASK_STATE_FAILED}},
       3,
       1,
       0,
       0,
       4,
       3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Job job;
    job.set_id("job-1");
    job.set_attempts(c.attempts);
    for (size_t i = 0; i < c.tasks.size(); ++i) {
      v1::Task* task = job.add_tasks();
      task->set_task_id("job-1.r" + std::to_string(i) + ".a" + std::to_string(c.tasks[i].first));
      task->set_attempt(c.tasks[i].first);
      task->set_state(c.tasks[i].second);
    }

    const AttemptTally tally = TallyAttempt(job);

    EXPECT_EQ(tally.total, c.total);
    EXPECT_EQ(tally.active, c.active);
    EXPECT_EQ(tally.starting, c.starting);
    EXPECT_EQ(tally.succeeded, c.succeeded);
    EXPECT_EQ(tally.failed, c.failed < 0 ? nullptr : &job.tasks(c.failed));
    EXPECT_EQ(tally.lost, c.lost < 0 ? nullptr : &job.tasks(c.lost));
  }
}

// ---- DecideRetry ----

TEST(DecideRetryTest, Table) {
  const std::string failed = "task job-1.r0.a1 exited with code 3";
  const std::string lost = "task job-1.r0.a1 lost (node gpu-a silent for 31s)";
  struct Case {
    std::string name;
    // Unset: the policy's default (3 retries, 10 s doubling up to 300 s,
    // lost tasks only).
    std::optional<int32_t> max_retries;
    std::optional<double> backoff_s;
    std::optional<double> max_backoff_s;
    std::vector<v1::RetryOn> retry_on;
    // Retries used so far.
    int32_t retries;
    v1::TaskState cause;
    bool retry;
    absl::Duration wait;
    std::string message;
  };
  const std::vector<v1::RetryOn> kFailed = {v1::RETRY_ON_FAILED};
  const std::vector<v1::RetryOn> kBoth = {v1::RETRY_ON_LOST, v1::RETRY_ON_FAILED};
  const absl::Duration kNone = absl::ZeroDuration();
  const std::vector<Case> cases = {
      {"lost, default policy",
       {},
       {},
       {},
       {},
       0,
       v1::TASK_STATE_LOST,
       true,
       absl::Seconds(10),
       lost + "; retry 1 of 3 in 10s"},
      {"failed, default policy: lost tasks only",
       {},
       {},
       {},
       {},
       0,
       v1::TASK_STATE_FAILED,
       false,
       kNone,
       failed},
      {"lost, failed tasks only",
       {},
       {},
       {},
       kFailed,
       0,
       v1::TASK_STATE_LOST,
       false,
       kNone,
       lost + "; lost tasks are not retried (restart_policy.retry_on)"},
      {"failed, both",
       {},
       {},
       {},
       kBoth,
       0,
       v1::TASK_STATE_FAILED,
       true,
       absl::Seconds(10),
       failed + "; retry 1 of 3 in 10s"},
      {"first retry: the backoff", 3, 10, 25, kFailed, 0, v1::TASK_STATE_FAILED, true,
       absl::Seconds(10), failed + "; retry 1 of 3 in 10s"},
      {"second retry: doubled", 3, 10, 25, kFailed, 1, v1::TASK_STATE_FAILED, true,
       absl::Seconds(20), failed + "; retry 2 of 3 in 20s"},
      {"third retry: capped", 3, 10, 25, kFailed, 2, v1::TASK_STATE_FAILED, true, absl::Seconds(25),
       failed + "; retry 3 of 3 in 25s"},
      {"exhausted", 3, 10, 25, kFailed, 3, v1::TASK_STATE_FAILED, false, kNone,
       failed + "; 3 retries exhausted"},
      {"lost, exhausted",
       2,
       {},
       {},
       {},
       2,
       v1::TASK_STATE_LOST,
       false,
       kNone,
       lost + "; 2 retries exhausted"},
      {"max_retries 0",
       0,
       {},
       {},
       kBoth,
       0,
       v1::TASK_STATE_LOST,
       false,
       kNone,
       lost + "; no retries allowed (restart_policy.max_retries: 0)"},
      {"no backoff",
       {},
       0,
       {},
       {},
       1,
       v1::TASK_STATE_LOST,
       true,
       kNone,
       lost + "; retry 2 of 3 now"},
      {"fractional backoff",
       {},
       0.75,
       {},
       {},
       1,
       v1::TASK_STATE_LOST,
       true,
       absl::Milliseconds(1500),
       lost + "; retry 2 of 3 in 1.5s"},
      {"many retries stay at the default cap",
       100,
       {},
       {},
       {},
       99,
       v1::TASK_STATE_LOST,
       true,
       absl::Minutes(5),
       lost + "; retry 100 of 100 in 5m"},
      {"a backoff above the default cap is the cap",
       {},
       400,
       {},
       {},
       2,
       v1::TASK_STATE_LOST,
       true,
       absl::Seconds(400),
       lost + "; retry 3 of 3 in 6m40s"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Job job;
    job.set_id("job-1");
    job.set_retries(c.retries);
    v1::RestartPolicy* policy = job.mutable_spec()->mutable_restart_policy();
    if (c.max_retries.has_value()) policy->set_max_retries(*c.max_retries);
    if (c.backoff_s.has_value()) policy->set_backoff_s(*c.backoff_s);
    if (c.max_backoff_s.has_value()) policy->set_max_backoff_s(*c.max_backoff_s);
    for (v1::RetryOn ending : c.retry_on) policy->add_retry_on(ending);
    v1::Task cause;
    cause.set_task_id("job-1.r0.a1");
    cause.set_state(c.cause);
    cause.set_message(c.cause == v1::TASK_STATE_LOST ? "node gpu-a silent for 31s"
                                                     : "exited with code 3");

    const RetryDecision decision = DecideRetry(job, cause);

    EXPECT_EQ(decision.retry, c.retry);
    if (c.retry) {
      EXPECT_EQ(decision.wait, c.wait);
    }
    EXPECT_EQ(decision.message, c.message);
  }
}

// ---- CopyUsage and SumEnergy ----

v1::Energy Joules(double gpu_j, double cpu_j, double static_j) {
  v1::Energy energy;
  energy.set_gpu_j(gpu_j);
  energy.set_cpu_j(cpu_j);
  energy.set_static_j(static_j);
  energy.set_total_j(gpu_j + cpu_j + static_j);
  return energy;
}

TEST(CopyUsageTest, Table) {
  struct Case {
    std::string name;
    // Unset: never reported.
    std::optional<double> task_quality;
    std::optional<double> usage_quality;
    std::optional<double> quality;
  };
  const std::vector<Case> cases = {
      {"a new quality", 0.5, 0.25, 0.25},
      {"a first quality", std::nullopt, 0.25, 0.25},
      {"a quality of 0 is a quality", 0.5, 0.0, 0.0},
      {"no quality this time keeps the last", 0.5, std::nullopt, 0.5},
      {"no quality yet", std::nullopt, std::nullopt, std::nullopt},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Task task;
    task.set_task_id("job-1.r0.a1");
    task.set_state(v1::TASK_STATE_RUNNING);
    task.set_node("gpu-a");
    *task.mutable_energy() = Joules(1000, 100, 10);
    task.set_samples_done(1);
    task.set_target_reached(true);
    task.set_waiting_for_shards(true);
    if (c.task_quality.has_value()) task.set_quality(*c.task_quality);
    v1::TaskUsage usage;
    usage.set_task_id("job-1.r0.a1");
    *usage.mutable_energy() = Joules(50, 5, 2.5);
    usage.set_samples_done(6400);
    usage.set_steps_done(200);
    usage.set_target_reached(false);
    usage.set_shards_done("0-3,8");
    usage.set_samples_total(12800);
    usage.set_waiting_for_shards(false);
    usage.set_latency_batch_size(32);
    usage.set_latency_ms(12.5);
    if (c.usage_quality.has_value()) usage.set_quality(*c.usage_quality);

    CopyUsage(usage, &task);

    // Energy is what the agent attributed so far: replaced, not added.
    EXPECT_EQ(task.energy().gpu_j(), 50);
    EXPECT_EQ(task.energy().cpu_j(), 5);
    EXPECT_EQ(task.energy().static_j(), 2.5);
    EXPECT_EQ(task.energy().total_j(), 57.5);
    EXPECT_EQ(task.samples_done(), 6400);
    EXPECT_EQ(task.steps_done(), 200);
    EXPECT_FALSE(task.target_reached());
    EXPECT_EQ(task.shards_done(), "0-3,8");
    EXPECT_EQ(task.samples_total(), 12800);
    EXPECT_FALSE(task.waiting_for_shards());
    EXPECT_EQ(task.has_quality(), c.quality.has_value());
    if (c.quality.has_value()) {
      EXPECT_EQ(task.quality(), *c.quality);
    }
    // The rest of the task is the scheduler's.
    EXPECT_EQ(task.task_id(), "job-1.r0.a1");
    EXPECT_EQ(task.state(), v1::TASK_STATE_RUNNING);
    EXPECT_EQ(task.node(), "gpu-a");
  }
}

TEST(SumEnergyTest, Table) {
  struct Case {
    std::string name;
    // (attempt, energy) of each task.
    std::vector<std::pair<int32_t, v1::Energy>> tasks;
    v1::Energy sum;
  };
  const std::vector<Case> cases = {
      {"no tasks", {}, Joules(0, 0, 0)},
      {"one task", {{1, Joules(100, 10, 5)}}, Joules(100, 10, 5)},
      {"every task of every attempt",
       {{1, Joules(100, 10, 5)},
        {1, Joules(0.5, 0.25, 0.125)},
        {2, Joules(200, 20, 2.25)},
        {2, v1::Energy()}},
       Joules(300.5, 30.25, 7.375)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Job job;
    // What an earlier sum said: replaced, not added to.
    *job.mutable_energy() = Joules(1e6, 1e6, 1e6);
    job.set_attempts(2);
    for (const auto& [attempt, energy] : c.tasks) {
      v1::Task* task = job.add_tasks();
      task->set_attempt(attempt);
      *task->mutable_energy() = energy;
    }

    SumEnergy(job);

    EXPECT_DOUBLE_EQ(job.energy().gpu_j(), c.sum.gpu_j());
    EXPECT_DOUBLE_EQ(job.energy().cpu_j(), c.sum.cpu_j());
    EXPECT_DOUBLE_EQ(job.energy().static_j(), c.sum.static_j());
    EXPECT_DOUBLE_EQ(job.energy().total_j(), c.sum.total_j());
  }
}

}  // namespace
}  // namespace joule
