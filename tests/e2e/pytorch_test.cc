// Real PyTorch jobs under Joule: the two-replica data-parallel job of
// examples/jobs/digits_ddp.py on two real agents, meeting through the
// rendezvous Joule gives it (MASTER_ADDR/MASTER_PORT), training to its
// target accuracy, metered in joules; its recurrence reusing the class's
// power profile; and a gang whose replica 0 is lost retried with a new
// port. Needs Debian's python3-torch and python3-sklearn (scripts/setup.sh
// installs them); skips, saying so, without them.

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string JobId(const CtlResult& submit) {
  return std::string(absl::StripAsciiWhitespace(submit.out));
}

// Whether Debian's python3 (the jobs' /usr/bin/python3) can import torch and sklearn.
bool HavePyTorch() {
  return std::system("/usr/bin/python3 -c 'import torch, sklearn' >/dev/null 2>&1") == 0;
}

// The job file: digits_ddp.py from the runfiles (it finds the joule
// library beside it, under python/), two replicas of one GPU each.
std::string DigitsJob(TestCluster& cluster, const std::string& name, const std::string& extra_args,
                      const std::string& extra_spec = "") {
  return cluster.WriteFile(
      absl::StrCat(name, ".yaml"),
      absl::StrCat("name: ", name, R"(
type: training
job_class: digits
command: /usr/bin/python3
args: [")",
                   RunfilePath("examples/jobs/digits_ddp.py"), R"(", "--target-accuracy", "0.95")",
                   extra_args, R"(]
resources: {gpus: 1, cpus: 1, memory: 1Gi, gpu_model: V100}
replicas: 2
batch_size: {default: 32, min: 16, max: 128}
shard_count: 8
)",
                   extra_spec));
}

double Seconds(const v1::Job& job) {
  return absl::ToDoubleSeconds(FromProtoTime(job.end_time()) - FromProtoTime(job.start_time()));
}

class PyTorchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HavePyTorch()) {
      GTEST_SKIP() << "python3 cannot import torch and sklearn (Debian's python3-torch and "
                      "python3-sklearn; scripts/setup.sh installs them)";
    }
  }
};

TEST_F(PyTorchTest, TwoReplicasRendezvousTrainToTheTargetAndTheRecurrenceReusesTheProfile) {
  TestCluster cluster("pytorch");
  // Short profiling windows (caps 300, 200, 100 W: 2 s each), so that
  // the class is profiled within one run.
  cluster.StartScheduler("127.0.0.1:0", {"--profile-step-w=100", "--profile-warmup=1",
                                         "--profile-window=2"});
  cluster.SetAgentFlags({"--telemetry-period=0.5"});
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("gpu-b", "V100:1");

  const std::string file = DigitsJob(cluster, "digits", R"(, "--min-step-seconds", "0.3")");
  CtlResult submit = cluster.Ctl({"submit", "-q", "-f", file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string first = JobId(submit);
  CtlResult watch = cluster.Ctl({"watch", first});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;

  absl::StatusOr<v1::Job> job = cluster.GetJob(first);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->message();
  ASSERT_EQ(job->tasks_size(), 2);
  const v1::Task& r0 = job->tasks(0);
  const v1::Task& r1 = job->tasks(1);
  // One replica per agent, meeting at replica 0's port.
  EXPECT_NE(r0.node(), r1.node());
  EXPECT_GE(r0.rendezvous_port(), 20000);  // the agents' --task-ports (TestCluster)
  EXPECT_LT(r0.rendezvous_port(), 32000);
  for (const v1::Task& task : job->tasks()) {
    EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.message();
    EXPECT_TRUE(task.target_reached()) << task.task_id();
    EXPECT_GE(task.quality(), 0.95) << task.task_id();
    EXPECT_GT(task.samples_done(), 0) << task.task_id();
    EXPECT_GT(task.energy().gpu_j(), 0) << task.task_id();
  }
  // Each replica trained on the shards it was given, and said so.
  EXPECT_EQ(r0.shards(), "0-3");
  EXPECT_EQ(r1.shards(), "4-7");
  EXPECT_EQ(r0.shards_done(), "0-3");
  EXPECT_EQ(r1.shards_done(), "4-7");
  EXPECT_GT(job->energy().total_j(), 0);
  CtlResult logs = cluster.Ctl({"logs", first});
  EXPECT_THAT(logs.out, HasSubstr("target_reached=1")) << logs.out << logs.err;

  // The class again: its power profile is stored, so it starts at the
  // chosen cap without profiling.
  submit = cluster.Ctl({"submit", "-q", "-f", file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string second = JobId(submit);
  watch = cluster.Ctl({"watch", second});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> again = cluster.GetJob(second);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->state(), v1::JOB_STATE_SUCCEEDED) << again->message();
  EXPECT_THAT(job->cap_decision(), Not(HasSubstr("stored profile")));
  EXPECT_THAT(again->cap_decision(), HasSubstr("stored profile of class digits"));
  for (const v1::Task& task : again->tasks()) {
    EXPECT_TRUE(task.target_reached()) << task.task_id();
    EXPECT_GE(task.quality(), 0.95) << task.task_id();
  }

  // The figures the README and the issue's note quote.
  std::cout << absl::StrFormat(
      "pytorch digits: first run accuracy %.4f, %.1f s, %.0f J (cap: %s); recurrence "
      "accuracy %.4f, %.1f s, %.0f J (cap: %s)\n",
      std::min(r0.quality(), r1.quality()), Seconds(*job), job->energy().total_j(),
      job->cap_decision(), std::min(again->tasks(0).quality(), again->tasks(1).quality()),
      Seconds(*again), again->energy().total_j(), again->cap_decision());
}

TEST_F(PyTorchTest, AGangWhoseReplicaZeroIsLostIsRetriedWithANewPort) {
  TestCluster cluster("pytorch-lost");
  cluster.StartScheduler("127.0.0.1:0", {"--heartbeat-timeout=1.5"});
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("gpu-b", "V100:1");
  cluster.StartAgent("gpu-c", "V100:1");
  // Slow enough that replica 0's node is lost mid-run.
  const std::string file =
      DigitsJob(cluster, "digits-lost", R"(, "--min-step-seconds", "0.05")",
                "restart_policy: {max_retries: 2, backoff_s: 0.5}\n");
  CtlResult submit = cluster.Ctl({"submit", "-q", "-f", file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);

  // Both replicas running and reporting progress.
  v1::Task r0;
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<v1::Job> job = cluster.GetJob(id);
        if (!job.ok() || job->tasks_size() < 2) return false;
        for (const v1::Task& task : job->tasks()) {
          if (task.state() != v1::TASK_STATE_RUNNING || task.samples_done() == 0) return false;
        }
        r0 = job->tasks(0);
        return true;
      },
      absl::Seconds(90)));
  // Replica 0's node dies without a word, its task with it.
  cluster.KillAgent(r0.node(), SIGKILL);
  kill(-static_cast<pid_t>(r0.pid()), SIGKILL);

  CtlResult watch = cluster.Ctl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->message();
  EXPECT_EQ(job->attempts(), 2);
  ASSERT_EQ(job->tasks_size(), 4);
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_LOST);
  const v1::Task& retry = job->tasks(2);
  EXPECT_EQ(retry.replica_index(), 0);
  EXPECT_EQ(retry.attempt(), 2);
  EXPECT_NE(retry.node(), r0.node());
  EXPECT_GT(retry.rendezvous_port(), 0);
  // A fresh port: never the lost attempt's on the same node.
  if (retry.node() == r0.node()) EXPECT_NE(retry.rendezvous_port(), r0.rendezvous_port());
  for (int i = 2; i < 4; ++i) {
    EXPECT_EQ(job->tasks(i).state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_TRUE(job->tasks(i).target_reached());
  }
}

}  // namespace
}  // namespace joule
