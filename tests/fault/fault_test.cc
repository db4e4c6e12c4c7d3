// Fault tests against Debian's real etcd: schedulers on an etcd store are
// killed, paused, restarted; etcd itself is restarted; an agent dies with
// running replicas. Every process is real and talks over loopback.
//
// Each scenario prints one line for the fault report (tests/fault_report.sh):
//   FAULT scenario=NAME submitted=N finished=N lost=N duplicated=N recovery_s=X
// where `lost` counts jobs that did not succeed, `duplicated` task attempts
// that started more than once (from the tasks' own output files) plus jobs
// stored twice for one submission, and recovery_s the time the scenario
// measures (see each test).

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/range_list.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "tests/e2e/test_cluster.h"
#include "tests/etcd/etcd_server.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

// A real etcd in the test's temporary directory, and the --store flag for it.
class EtcdFixture {
 public:
  explicit EtcdFixture(const std::string& dir) {
    absl::StatusOr<std::unique_ptr<etcd::EtcdServer>> server =
        etcd::EtcdServer::Start(absl::StrCat(dir, "/etcd"), {});
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) server_ = *std::move(server);
  }
  bool ok() const { return server_ != nullptr; }
  etcd::EtcdServer& server() { return *server_; }
  std::string store_flag() const {
    return absl::StrCat("--store=etcd://", server_->endpoint(), "/joule-test/");
  }

 private:
  std::unique_ptr<etcd::EtcdServer> server_;
};

// Submits a job named `name` whose task appends "<task id>" to a file named
// after its task id under `runs_dir`, then sleeps `seconds`. Returns the id
// ("" on failure).
std::string SubmitMarked(TestCluster& cluster, const std::string& name,
                         const std::string& runs_dir, double seconds,
                         const std::string& timeout = "60") {
  CtlResult submit = cluster.Ctl(
      {"--timeout", timeout, "submit", "-q", "--name", name, "--cpus", "1", "--",
       "/bin/sh", "-c",
       absl::StrFormat("echo \"$JOULE_TASK_ID\" >> %s/\"$JOULE_TASK_ID\"; sleep %g",
                       runs_dir, seconds)});
  if (submit.exit_code != 0) {
    ADD_FAILURE() << "submit " << name << ": " << submit.err;
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(submit.out));
}

// Counts of one scenario, from the jobs and the tasks' own files.
struct Tally {
  int submitted = 0;
  int finished = 0;
  int lost = 0;
  int duplicated = 0;
};

// Every file under `runs_dir` is one task attempt; a file with more than one
// line is an attempt that started more than once. Jobs with the same name are
// one submission stored twice.
Tally Count(const v1::ListJobsResponse& jobs, int submitted,
            const std::string& runs_dir) {
  Tally tally;
  tally.submitted = submitted;
  std::map<std::string, int> names;
  for (const v1::Job& job : jobs.jobs()) {
    ++names[job.spec().name()];
    if (job.state() == v1::JOB_STATE_SUCCEEDED) ++tally.finished;
  }
  tally.lost = submitted - tally.finished;
  for (const auto& [name, count] : names) tally.duplicated += count - 1;
  DIR* dir = opendir(runs_dir.c_str());
  if (dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      const std::string file = entry->d_name;
      if (file == "." || file == "..") continue;
      const std::vector<std::string> lines = absl::StrSplit(
          ReadAll(absl::StrCat(runs_dir, "/", file)), '\n', absl::SkipEmpty());
      if (lines.size() > 1) ++tally.duplicated;
    }
    closedir(dir);
  }
  return tally;
}

void Report(const std::string& scenario, const Tally& tally, double recovery_s) {
  std::cout << absl::StrFormat(
                   "FAULT scenario=%s submitted=%d finished=%d lost=%d "
                   "duplicated=%d recovery_s=%.1f",
                   scenario, tally.submitted, tally.finished, tally.lost,
                   tally.duplicated, recovery_s)
            << std::endl;
}

bool AllFinal(TestCluster& cluster, int expected) {
  absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
  if (!jobs.ok() || jobs->jobs_size() < expected) return false;
  for (const v1::Job& job : jobs->jobs()) {
    if (job.state() != v1::JOB_STATE_SUCCEEDED && job.state() != v1::JOB_STATE_FAILED &&
        job.state() != v1::JOB_STATE_CANCELLED) {
      return false;
    }
  }
  return true;
}

std::string MakeRunsDir(TestCluster& cluster) {
  const std::string runs = cluster.dir() + "/runs";
  mkdir(runs.c_str(), 0755);
  return runs;
}

// kill -9 of the leader: a standby leads within 10 s and every job finishes.
TEST(FaultTest, LeaderKilledStandbyTakesOverWithin10s) {
  TestCluster cluster("failover");
  EtcdFixture etcd(cluster.dir());
  ASSERT_TRUE(etcd.ok());
  cluster.StartReplicas(2, {etcd.store_flag()});
  const int first = cluster.WaitForLeader(-1, absl::Seconds(15));
  ASSERT_GE(first, 0);
  cluster.StartAgent("node-a", "");
  cluster.StartAgent("node-b", "");
  const std::string runs = MakeRunsDir(cluster);
  constexpr int kJobs = 10;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_FALSE(SubmitMarked(cluster, absl::StrCat("failover-", i), runs, 3).empty());
  }
  // Some are running when the leader dies.
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
    if (!jobs.ok()) return false;
    for (const v1::Job& job : jobs->jobs()) {
      if (job.state() == v1::JOB_STATE_RUNNING) return true;
    }
    return false;
  }));
  const absl::Time killed = absl::Now();
  cluster.SignalReplica(first, SIGKILL);
  const int second = cluster.WaitForLeader(first, absl::Seconds(20));
  const double takeover_s = absl::ToDoubleSeconds(absl::Now() - killed);
  ASSERT_GE(second, 0) << cluster.ReplicaLog(1 - first);
  EXPECT_LT(takeover_s, 10.0);
  EXPECT_THAT(cluster.ReplicaLog(second), HasSubstr("leading as"));

  ASSERT_TRUE(WaitFor([&] { return AllFinal(cluster, kJobs); }, absl::Seconds(60)));
  absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
  ASSERT_TRUE(jobs.ok());
  const Tally tally = Count(*jobs, kJobs, runs);
  EXPECT_EQ(tally.finished, kJobs);
  EXPECT_EQ(tally.duplicated, 0);
  // Running tasks were adopted, not run again.
  for (const v1::Job& job : jobs->jobs()) EXPECT_EQ(job.attempts(), 1) << job.id();
  Report("leader-kill-9", tally, takeover_s);
}

// SIGSTOP of the leader past its lease: a standby takes over; when the old
// leader runs again it cannot write anything and restarts as a standby.
TEST(FaultTest, PausedOldLeaderIsFenced) {
  TestCluster cluster("fencing");
  EtcdFixture etcd(cluster.dir());
  ASSERT_TRUE(etcd.ok());
  cluster.StartReplicas(2, {etcd.store_flag(), "--leader-lease=2",
                            "--heartbeat-timeout=6"});
  const int first = cluster.WaitForLeader(-1, absl::Seconds(15));
  ASSERT_GE(first, 0);
  cluster.StartAgent("node-a", "");
  const std::string runs = MakeRunsDir(cluster);
  const std::string id = SubmitMarked(cluster, "long", runs, 12);
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster.GetJob(id);
    return job.ok() && job->state() == v1::JOB_STATE_RUNNING;
  }));

  const absl::Time paused = absl::Now();
  cluster.SignalReplica(first, SIGSTOP);
  const int second = cluster.WaitForLeader(first, absl::Seconds(20));
  const double takeover_s = absl::ToDoubleSeconds(absl::Now() - paused);
  ASSERT_GE(second, 0);
  // The new leader adopts the running task once the agent has moved over.
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster.GetJob(id);
    return job.ok() && job->state() == v1::JOB_STATE_RUNNING &&
           job->tasks(0).state() == v1::TASK_STATE_RUNNING;
  }));
  // By now the old leader's view is stale: its agent is "silent" beyond the
  // heartbeat timeout, so on waking it would mark the task lost -- if it
  // could write.
  const absl::Duration silent = absl::Now() - paused;
  if (silent < absl::Seconds(7)) absl::SleepFor(absl::Seconds(7) - silent);
  cluster.SignalReplica(first, SIGCONT);
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(cluster.ReplicaLog(first), "no longer the leader");
      },
      absl::Seconds(15)))
      << cluster.ReplicaLog(first);
  // It came back as a standby on its old address; the new leader still
  // leads, and the standby sends a client that only knows it to the leader.
  EXPECT_TRUE(cluster.ReplicaRunning(first));
  EXPECT_TRUE(WaitFor([&] { return cluster.LeaderIndex() == second; }));
  std::vector<std::string> standby_only = cluster.CtlFlags();
  standby_only[0] = absl::StrCat("--scheduler=", cluster.ReplicaAddress(first));
  standby_only.insert(standby_only.end(), {"get", id});
  CtlResult via_standby = cluster.Run("cli/joulectl", standby_only);
  EXPECT_EQ(via_standby.exit_code, 0) << via_standby.err;
  EXPECT_THAT(via_standby.out, HasSubstr(id));

  ASSERT_TRUE(WaitFor([&] { return AllFinal(cluster, 1); }, absl::Seconds(60)));
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->message();
  EXPECT_EQ(job->attempts(), 1);
  ASSERT_EQ(job->tasks_size(), 1);
  for (const v1::JobEvent& event : job->events()) {
    EXPECT_NE(event.reason(), "Retrying") << event.message();
    EXPECT_NE(event.reason(), "Requeued") << event.message();
  }
  absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
  ASSERT_TRUE(jobs.ok());
  Report("paused-leader-fenced", Count(*jobs, 1, runs), takeover_s);
}

// 200 jobs submitted while the only scheduler is killed and restarted three
// times: all finish, every task attempt started exactly once.
TEST(FaultTest, TwoHundredJobsThroughThreeSchedulerRestarts) {
  TestCluster cluster("restarts");
  EtcdFixture etcd(cluster.dir());
  ASSERT_TRUE(etcd.ok());
  cluster.StartReplicas(1, {etcd.store_flag(), "--leader-lease=2"});
  ASSERT_EQ(cluster.WaitForLeader(-1, absl::Seconds(15)), 0);
  cluster.StartAgent("node-a", "");
  cluster.StartAgent("node-b", "");
  const std::string runs = MakeRunsDir(cluster);
  constexpr int kJobs = 200;

  std::atomic<int> submitted{0};
  std::thread submitter([&] {
    for (int i = 0; i < kJobs; ++i) {
      if (!SubmitMarked(cluster, absl::StrCat("job-", i), runs, 0.2, "120").empty()) {
        ++submitted;
      }
    }
  });
  std::vector<double> recoveries;
  for (int restart = 0; restart < 3; ++restart) {
    const int target = (restart + 1) * kJobs / 4;
    WaitFor([&] { return submitted.load() >= target; }, absl::Seconds(120));
    cluster.SignalReplica(0, SIGKILL);
    const absl::Time killed = absl::Now();
    absl::SleepFor(absl::Milliseconds(500));
    cluster.RestartReplica(0);
    EXPECT_EQ(cluster.WaitForLeader(-1, absl::Seconds(20)), 0);
    recoveries.push_back(absl::ToDoubleSeconds(absl::Now() - killed));
  }
  submitter.join();
  EXPECT_EQ(submitted.load(), kJobs);
  ASSERT_TRUE(WaitFor([&] { return AllFinal(cluster, kJobs); }, absl::Seconds(180)));
  absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
  ASSERT_TRUE(jobs.ok());
  const Tally tally = Count(*jobs, kJobs, runs);
  EXPECT_EQ(jobs->jobs_size(), kJobs);
  EXPECT_EQ(tally.finished, kJobs);
  EXPECT_EQ(tally.duplicated, 0);
  // Each job's successful attempt left exactly one file.
  for (const v1::Job& job : jobs->jobs()) {
    for (const v1::Task& task : job.tasks()) {
      if (task.state() != v1::TASK_STATE_SUCCEEDED) continue;
      EXPECT_EQ(ReadAll(absl::StrCat(runs, "/", task.task_id())),
                absl::StrCat(task.task_id(), "\n"));
    }
  }
  double worst = 0;
  for (double r : recoveries) worst = std::max(worst, r);
  Report("scheduler-restart-x3", tally, worst);
}

// etcd killed and restarted under a running scheduler: it keeps its
// leadership (or wins it again) and keeps scheduling.
TEST(FaultTest, EtcdRestartedWhileSchedulerRuns) {
  TestCluster cluster("etcd-restart");
  EtcdFixture etcd(cluster.dir());
  ASSERT_TRUE(etcd.ok());
  cluster.StartReplicas(1, {etcd.store_flag()});
  ASSERT_EQ(cluster.WaitForLeader(-1, absl::Seconds(15)), 0);
  cluster.StartAgent("node-a", "");
  const std::string runs = MakeRunsDir(cluster);
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(SubmitMarked(cluster, absl::StrCat("before-", i), runs, 2).empty());
  }
  ASSERT_TRUE(etcd.server().Kill(SIGKILL).ok());
  const absl::Time down = absl::Now();
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE(etcd.server().Restart().ok());
  // Scheduling goes on: new jobs are accepted and run.
  std::string after;
  ASSERT_TRUE(WaitFor([&] {
    CtlResult submit = cluster.Ctl(
        {"--timeout", "2", "submit", "-q", "--name", "after-0", "--cpus", "1", "--",
         "/bin/sh", "-c",
         absl::StrFormat("echo \"$JOULE_TASK_ID\" >> %s/\"$JOULE_TASK_ID\"", runs)});
    if (submit.exit_code == 0) after = std::string(absl::StripAsciiWhitespace(submit.out));
    return submit.exit_code == 0;
  }, absl::Seconds(30)));
  const double recovery_s = absl::ToDoubleSeconds(absl::Now() - down);
  for (int i = 1; i < 5; ++i) {
    ASSERT_FALSE(SubmitMarked(cluster, absl::StrCat("after-", i), runs, 0.5).empty());
  }
  ASSERT_TRUE(WaitFor([&] { return AllFinal(cluster, 10); }, absl::Seconds(60)));
  absl::StatusOr<v1::ListJobsResponse> jobs = cluster.ListJobs();
  ASSERT_TRUE(jobs.ok());
  const Tally tally = Count(*jobs, 10, runs);
  EXPECT_EQ(tally.finished, 10);
  EXPECT_EQ(tally.duplicated, 0);
  Report("etcd-restart", tally, recovery_s);
}

// A node dies (its agent and its tasks, kill -9) while an inference job's
// replicas run on it: the lost replica's unfinished shards are finished by
// the replica that lives, and every shard is done exactly once.
TEST(FaultTest, KilledAgentsShardsAreFinishedElsewhere) {
  TestCluster cluster("agent-kill");
  EtcdFixture etcd(cluster.dir());
  ASSERT_TRUE(etcd.ok());
  cluster.StartReplicas(1, {etcd.store_flag(), "--heartbeat-timeout=2"});
  ASSERT_EQ(cluster.WaitForLeader(-1, absl::Seconds(15)), 0);
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("gpu-b", "V100:1");
  constexpr int kShards = 8;
  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "infer", "--type", "inference", "--gpus", "1",
       "--replicas", "2", "--shards", absl::StrCat(kShards), "--batch-size", "64",
       "--", RunfilePath("examples/batch_infer"), "--samples-per-shard", "640",
       "--sim-step-ms", "100", "--idle-wait-ms", "5000"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id(absl::StripAsciiWhitespace(submit.out));
  // Both replicas run (about 1 s per shard, 4 shards each); then gpu-b's
  // node dies with its task.
  int64_t pid_b = 0;
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster.GetJob(id);
    if (!job.ok() || job->tasks_size() < 2) return false;
    for (const v1::Task& task : job->tasks()) {
      if (task.state() != v1::TASK_STATE_RUNNING || task.pid() <= 0) return false;
      if (task.node() == "gpu-b") pid_b = task.pid();
    }
    return pid_b > 0;
  }));
  const absl::Time killed = absl::Now();
  cluster.KillAgent("gpu-b", SIGKILL);
  kill(-static_cast<pid_t>(pid_b), SIGKILL);

  ASSERT_TRUE(WaitFor([&] { return AllFinal(cluster, 1); }, absl::Seconds(90)));
  const double finished_s = absl::ToDoubleSeconds(absl::Now() - killed);
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->message();
  // Every shard done once, across all tasks; the lost task's undone shards
  // were done by gpu-a.
  std::map<int, int> done;
  bool lost_seen = false;
  for (const v1::Task& task : job->tasks()) {
    lost_seen |= task.state() == v1::TASK_STATE_LOST;
    absl::StatusOr<std::set<int>> shards = ParseRangeList(task.shards_done());
    ASSERT_TRUE(shards.ok()) << task.shards_done();
    for (int shard : *shards) ++done[shard];
  }
  EXPECT_TRUE(lost_seen);
  ASSERT_EQ(done.size(), static_cast<size_t>(kShards));
  for (const auto& [shard, count] : done) EXPECT_EQ(count, 1) << "shard " << shard;

  Tally tally;
  tally.submitted = 1;
  tally.finished = job->state() == v1::JOB_STATE_SUCCEEDED ? 1 : 0;
  tally.lost = 1 - tally.finished;
  for (const auto& [shard, count] : done) tally.duplicated += count - 1;
  Report("agent-kill-9", tally, finished_s);
}

}  // namespace
}  // namespace joule
