// End-to-end tests: the real joule-scheduler, real joule-agent binaries with
// simulated devices and the real joulectl, on loopback, running real task
// processes.

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "common/clock.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

std::string JobId(const CtlResult& submit) {
  std::string id = submit.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

v1::JobState StateOf(TestCluster& cluster, const std::string& id) {
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  return job.ok() ? job->state() : v1::JOB_STATE_UNSPECIFIED;
}

bool ProcessGone(int64_t pid) { return kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH; }

bool GroupGone(int64_t pgid) {
  return kill(-static_cast<pid_t>(pgid), 0) == -1 && errno == ESRCH;
}

int CountLines(const std::string& path, const std::string& text) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line == text;
  return n;
}

// Waits until task `index` of the job has a process and returns its pid
// (0 if it never does).
int64_t WaitForTaskPid(TestCluster& cluster, const std::string& id, int index = 0) {
  int64_t pid = 0;
  WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster.GetJob(id);
    if (!job.ok() || job->tasks_size() <= index ||
        job->tasks(index).state() != v1::TASK_STATE_RUNNING) {
      return false;
    }
    pid = job->tasks(index).pid();
    return pid > 0;
  });
  return pid;
}

TEST(EndToEndTest, TrainingJobRunsAsRealProcessAndIsMetered) {
  TestCluster cluster("metered");
  cluster.StartScheduler();
  cluster.StartAgent("gpu-a", "V100:2");
  cluster.StartAgent("cpu-c", "");
  const std::string job_file = cluster.WriteFile("mlp.yaml", absl::StrCat(R"(
name: mlp
type: training
command: )", RunfilePath("examples/mlp_trainer"), R"(
args: ["--epochs", "3", "--samples-per-shard", "256", "--target-loss", "50"]
resources: {gpus: 1, cpus: 1, memory: 256Mi, gpu_model: V100}
batch_size: {default: 32, min: 16, max: 128}
shard_count: 4
)"));
  CtlResult submit = cluster.Ctl({"submit", "-q", "-f", job_file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);

  CtlResult watch = cluster.Ctl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("SUCCEEDED"));

  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(job->tasks_size(), 1);
  const v1::Task& task = job->tasks(0);
  EXPECT_EQ(task.node(), "gpu-a");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(task.exit_code(), 0);
  EXPECT_GT(task.pid(), 0);
  EXPECT_EQ(task.batch_size(), 32);
  EXPECT_EQ(task.shards(), "0-3");
  EXPECT_GT(task.energy().gpu_j(), 0);
  EXPECT_GT(job->energy().total_j(), 0);
  EXPECT_NEAR(job->energy().total_j(),
              job->energy().gpu_j() + job->energy().cpu_j() + job->energy().static_j(),
              1e-6);
  // The task reported progress through the contract: 3 epochs x 4 shards x
  // 256 samples, a quality metric, its target and every shard done.
  EXPECT_EQ(task.samples_done(), 3 * 4 * 256);
  EXPECT_TRUE(task.has_quality());
  EXPECT_GT(task.quality(), 0);
  EXPECT_TRUE(task.target_reached());
  EXPECT_EQ(task.shards_done(), "0-3");

  // Why it went where it went: the CPU-only node was turned away as
  // unresolvable by GpuModel (counted from the snapshot's index, not
  // visited), gpu-a was the best candidate and chosen.
  CtlResult explain = cluster.Ctl({"explain", id});
  EXPECT_EQ(explain.exit_code, 0) << explain.err;
  EXPECT_THAT(explain.out, HasSubstr("Placement: PLACED"));
  EXPECT_THAT(explain.out, HasSubstr("*  gpu-a"));
  EXPECT_THAT(explain.out, HasSubstr("Profile:   energy"));
  EXPECT_THAT(explain.out, HasSubstr("Nodes:     2 in the cluster, 1 filtered, 1 feasible"));
  EXPECT_THAT(explain.out, ContainsRegex("1 +GpuModel +UNRESOLVABLE +fewer than 1 V100 GPUs in all"));
  EXPECT_EQ(cluster.Ctl({"explain", "job-404"}).exit_code, 1);

  // Its real output, fetched through the scheduler from the agent.
  CtlResult logs = cluster.Ctl({"logs", id});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("epoch 3/3"));
  EXPECT_THAT(logs.out, HasSubstr("done epochs=3"));
}

TEST(EndToEndTest, InferenceAndGangJobsRun) {
  TestCluster cluster("gang");
  cluster.StartScheduler();
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("gpu-b", "A40:1");
  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "infer", "--type", "inference", "--gpus", "1",
       "--replicas", "2", "--shards", "6", "--batch-size", "64", "--",
       RunfilePath("examples/batch_infer"), "--samples-per-shard", "128"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);
  CtlResult watch = cluster.Ctl({"watch", id});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->tasks_size(), 2);
  // One replica per node (each has one GPU), shards split 0-2 and 3-5.
  EXPECT_NE(job->tasks(0).node(), job->tasks(1).node());
  EXPECT_EQ(job->tasks(0).shards(), "0-2");
  EXPECT_EQ(job->tasks(1).shards(), "3-5");
  CtlResult logs = cluster.Ctl({"logs", id});
  for (int shard = 0; shard < 6; ++shard) {
    EXPECT_THAT(logs.out, HasSubstr(absl::StrCat("shard ", shard, ": 128 samples")));
  }
}

TEST(EndToEndTest, CancelledJobLeavesNoProcessBehind) {
  TestCluster cluster("cancel");
  cluster.StartScheduler();
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("cpu-c", "");
  // A shell with a child: both must be gone after the cancel.
  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "sleeper", "--gpus", "1", "--", "/bin/sh", "-c",
       "sleep 1000 & wait"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);
  const int64_t pid = WaitForTaskPid(cluster, id);
  ASSERT_GT(pid, 0);
  ASSERT_FALSE(GroupGone(pid));

  CtlResult cancel = cluster.Ctl({"cancel", id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  ASSERT_TRUE(WaitFor([&] { return StateOf(cluster, id) == v1::JOB_STATE_CANCELLED; }));
  EXPECT_TRUE(ProcessGone(pid));
  EXPECT_TRUE(GroupGone(pid));
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_KILLED);
  // Cancelling twice is refused with the reason.
  CtlResult again = cluster.Ctl({"cancel", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already ended"));
}

TEST(EndToEndTest, SchedulerKill9RestartKeepsJobsAndAdoptsRunningTask) {
  TestCluster cluster("restart");
  cluster.StartScheduler();
  const std::string port = cluster.address().substr(cluster.address().rfind(':') + 1);
  cluster.StartAgent("gpu-a", "V100:2");
  cluster.StartAgent("cpu-c", "");

  // A: done before the crash.
  CtlResult a = cluster.Ctl({"submit", "-q", "--name", "quick", "--", "/bin/true"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(cluster.Ctl({"watch", JobId(a)}).exit_code, 0);
  // B: running across the crash; it appends a line when it starts.
  const std::string marker = cluster.dir() + "/starts";
  CtlResult b = cluster.Ctl({"submit", "-q", "--name", "long", "--gpus", "1", "--", "/bin/sh",
                             "-c", absl::StrCat("echo started >> ", marker, "; sleep 4")});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  // C: held as unschedulable. D: cancelled.
  CtlResult c = cluster.Ctl({"submit", "-q", "--name", "huge", "--gpus", "8", "--", "/bin/true"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  CtlResult d = cluster.Ctl({"submit", "-q", "--name", "never", "--gpus", "8", "--", "/bin/true"});
  ASSERT_EQ(cluster.Ctl({"cancel", JobId(d)}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return CountLines(marker, "started") == 1; }));
  ASSERT_TRUE(WaitFor([&] { return StateOf(cluster, JobId(b)) == v1::JOB_STATE_RUNNING; }));

  absl::StatusOr<v1::ListJobsResponse> before = cluster.ListJobs();
  ASSERT_TRUE(before.ok());
  std::map<std::string, v1::JobState> states_before;
  for (const v1::Job& job : before->jobs()) states_before[job.id()] = job.state();
  EXPECT_EQ(states_before[JobId(c)], v1::JOB_STATE_PENDING);
  EXPECT_THAT(StateOf(cluster, JobId(c)), v1::JOB_STATE_PENDING);
  absl::StatusOr<v1::Job> held = cluster.GetJob(JobId(c));
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(held->message(), HasSubstr("unschedulable"));

  cluster.KillScheduler();
  cluster.StartScheduler(absl::StrCat("127.0.0.1:", port));

  absl::StatusOr<v1::ListJobsResponse> after = cluster.ListJobs();
  ASSERT_TRUE(after.ok());
  std::map<std::string, v1::JobState> states_after;
  for (const v1::Job& job : after->jobs()) states_after[job.id()] = job.state();
  EXPECT_EQ(states_after, states_before);

  // B is adopted when its agent reconnects and finishes without a rerun.
  CtlResult watch = cluster.Ctl({"watch", JobId(b)});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(JobId(b));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job->attempts(), 1);
  EXPECT_EQ(job->tasks_size(), 1);
  EXPECT_GT(job->energy().total_j(), 0);
  EXPECT_EQ(CountLines(marker, "started"), 1);
  EXPECT_EQ(StateOf(cluster, JobId(a)), v1::JOB_STATE_SUCCEEDED);
}

TEST(EndToEndTest, LostNodeTasksAreRequeuedElsewhere) {
  TestCluster cluster("lost");
  cluster.StartScheduler("127.0.0.1:0", {"--heartbeat-timeout=1.5"});
  cluster.StartAgent("gpu-a", "V100:1");
  const std::string marker = cluster.dir() + "/starts";
  const std::string spec = cluster.WriteFile(
      "survivor.yaml",
      absl::StrCat("name: survivor\ncommand: /bin/sh\nargs: [\"-c\", \"echo started >> ",
                   marker, "; sleep 2\"]\nresources: {gpus: 1}\n",
                   "restart_policy: {max_retries: 2, backoff_s: 0.5}\n"));
  CtlResult submit = cluster.Ctl({"submit", "-q", "-f", spec});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);
  const int64_t first_pid = WaitForTaskPid(cluster, id);
  ASSERT_GT(first_pid, 0);
  cluster.StartAgent("gpu-b", "V100:1");
  // The agent dies without a word; its orphaned task is cleaned up here.
  cluster.KillAgent("gpu-a", SIGKILL);
  kill(-static_cast<pid_t>(first_pid), SIGKILL);

  CtlResult watch = cluster.Ctl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->attempts(), 2);
  ASSERT_EQ(job->tasks_size(), 2);
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_LOST);
  EXPECT_EQ(job->tasks(1).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(job->tasks(1).node(), "gpu-b");
  bool retried = false;
  for (const v1::JobEvent& event : job->events()) {
    retried |= event.reason() == "Retrying" &&
               absl::StrContains(event.message(), "retry 1 of 2");
  }
  EXPECT_TRUE(retried);
  CtlResult nodes = cluster.Ctl({"nodes"});
  EXPECT_THAT(nodes.out, HasSubstr("DOWN"));
}

// Idle power management with real agents: an idle node is suspended through
// the configured command (here a script that logs; the test then stops the
// agent, as a real suspend would), and resumed through the other command when
// a job needs it (the test starts the agent again, as the node booting would).
TEST(EndToEndTest, IdleNodeIsSuspendedAndResumedWhenAJobNeedsIt) {
  TestCluster cluster("power");
  const std::string log = cluster.dir() + "/power.log";
  const std::string suspend =
      cluster.WriteFile("suspend.sh", absl::StrCat("#!/bin/sh\necho suspend $1 >> ", log, "\n"));
  const std::string resume =
      cluster.WriteFile("resume.sh", absl::StrCat("#!/bin/sh\necho resume $1 >> ", log, "\n"));
  ASSERT_EQ(chmod(suspend.c_str(), 0755), 0);
  ASSERT_EQ(chmod(resume.c_str(), 0755), 0);
  cluster.StartScheduler("127.0.0.1:0",
                         {"--suspend-after=1", "--resume-timeout=60",
                          "--suspend-program=" + suspend, "--resume-program=" + resume});
  cluster.StartAgent("gpu-a", "V100:1");
  ASSERT_TRUE(WaitFor([&] { return ReadAll(log) == "suspend gpu-a\n"; })) << ReadAll(log);
  // The node goes down: its agent stops and says so.
  cluster.KillAgent("gpu-a", SIGTERM);
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(cluster.Ctl({"nodes"}).out, "SUSPENDED");
  }));

  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "wakes", "--gpus", "1", "--", "/bin/sh", "-c", "exit 0"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadAll(log), "resume gpu-a"); }))
      << ReadAll(log);
  absl::StatusOr<v1::Job> waiting = cluster.GetJob(JobId(submit));
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(waiting->message(), HasSubstr("to resume"));
  // The node comes up: the job runs there.
  cluster.StartAgent("gpu-a", "V100:1");
  CtlResult watch = cluster.Ctl({"watch", JobId(submit)});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(JobId(submit));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(job->tasks_size(), 1);
  EXPECT_EQ(job->tasks(0).node(), "gpu-a");
  EXPECT_EQ(job->attempts(), 1);
}

TEST(EndToEndTest, HeartbeatsKeepNodeReadyBetweenRareTelemetry) {
  TestCluster cluster("heartbeat");
  cluster.StartScheduler("127.0.0.1:0", {"--heartbeat-timeout=1.5"});
  // Telemetry every 30 s, far beyond the timeout: heartbeats carry liveness.
  cluster.SetAgentFlags({"--telemetry-period=30", "--heartbeat-period=0.3"});
  cluster.StartAgent("gpu-a", "V100:1");
  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "steady", "--gpus", "1", "--", "/bin/sleep", "3"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  CtlResult watch = cluster.Ctl({"watch", JobId(submit)});
  EXPECT_EQ(watch.exit_code, 0) << watch.out;
  absl::StatusOr<v1::Job> job = cluster.GetJob(JobId(submit));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->attempts(), 1);
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_SUCCEEDED);
  CtlResult nodes = cluster.Ctl({"nodes"});
  EXPECT_THAT(nodes.out, HasSubstr("READY"));
  EXPECT_THAT(nodes.out, Not(HasSubstr("DOWN")));
}

TEST(EndToEndTest, RestartedAgentKillsTasksItsPredecessorLeft) {
  TestCluster cluster("agent-restart");
  cluster.StartScheduler("127.0.0.1:0", {"--heartbeat-timeout=1.5"});
  cluster.StartAgent("gpu-a", "V100:1");
  const std::string marker = cluster.dir() + "/starts";
  CtlResult submit = cluster.Ctl(
      {"submit", "-q", "--name", "orphan", "--gpus", "1", "--", "/bin/sh", "-c",
       absl::StrCat("echo started >> ", marker, "; sleep 1000")});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = JobId(submit);
  const int64_t first_pid = WaitForTaskPid(cluster, id);
  ASSERT_GT(first_pid, 0);
  // The agent dies without stopping its task, which keeps running.
  cluster.KillAgent("gpu-a", SIGKILL);
  ASSERT_FALSE(GroupGone(first_pid));
  // Its successor kills the orphan before the task runs again.
  cluster.StartAgent("gpu-a", "V100:1");
  EXPECT_TRUE(WaitFor([&] { return GroupGone(first_pid); }));
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster.GetJob(id);
    return job.ok() && job->tasks_size() == 2 &&
           job->tasks(1).state() == v1::TASK_STATE_RUNNING;
  }));
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_LOST);
  EXPECT_EQ(CountLines(marker, "started"), 2);
  ASSERT_EQ(cluster.Ctl({"cancel", id}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return StateOf(cluster, id) == v1::JOB_STATE_CANCELLED; }));
  EXPECT_TRUE(WaitFor([&] { return GroupGone(job->tasks(1).pid()); }));
}

TEST(EndToEndTest, BadSpecsAreRefusedAndNothingIsStored) {
  TestCluster cluster("invalid");
  cluster.StartScheduler();
  struct BadFile {
    std::string yaml;
    int exit_code;
    std::string message;
  };
  const std::string huge_command(10 << 20, 'x');
  std::string many_env = "env:\n";
  for (int i = 0; i < 100000; ++i) absl::StrAppend(&many_env, "  V", i, ": x\n");
  const std::vector<BadFile> cases = {
      {"name: a\ntype: training\n", 1, "command: required"},
      {"name: a\ntype: training\ncommand: /bin/true\nresources: {gpus: 100000}\n", 1, "resources.gpus"},
      {"name: a\ntype: sideways\ncommand: /bin/true\n", 2, "line 2, column 7"},
      {"name: a\ncomand: /bin/true\n", 2, "unknown field \"comand\""},
      {"name: a\ncommand: /bin/true\nresources: {gpus: -1}\n", 1, "resources.gpus"},
      {"name: a\ncommand: /bin/true\nresources: {cpus: 0}\n", 1, "resources.cpus"},
      {"name: a\ncommand: /bin/true\nbatch_size: {default: 64, min: 128, max: 64}\n", 1,
       "batch_size"},
      {"name: a\ncommand: /bin/true\nreplicas: 0\n", 1, "replicas"},
      // Over the server's receive limit: refused by gRPC before it is read.
      {absl::StrCat("name: a\ncommand: ", huge_command, "\n"), 1, "RESOURCE_EXHAUSTED"},
      // Over SubmitJob's 1 MiB: refused before it is decoded.
      {absl::StrCat("name: a\ncommand: /bin/true\n", many_env), 1, "RESOURCE_EXHAUSTED"},
      {"name: a\ncommand: [unclosed\n", 2, "line"},
  };
  int i = 0;
  for (const BadFile& bad : cases) {
    const std::string path = cluster.WriteFile(absl::StrCat("bad", i++, ".yaml"), bad.yaml);
    CtlResult result = cluster.Ctl({"submit", "-f", path});
    EXPECT_EQ(result.exit_code, bad.exit_code) << bad.message << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(bad.message));
    if (bad.exit_code == 1 && bad.message != std::string("RESOURCE_EXHAUSTED")) {
      EXPECT_THAT(result.err, HasSubstr("INVALID_ARGUMENT"));
    }
  }
  absl::StatusOr<v1::ListJobsResponse> list = cluster.ListJobs();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->jobs_size(), 0);
  // Unknown jobs and bad flags are errors with a non-zero exit.
  EXPECT_EQ(cluster.Ctl({"get", "job-99"}).exit_code, 1);
  EXPECT_EQ(cluster.Ctl({"list", "--state", "bogus"}).exit_code, 2);
  EXPECT_EQ(cluster.Ctl({"frobnicate"}).exit_code, 2);
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::string& address, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(10)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << address << " " << service << ": " << status.error_message();
  return response.status();
}

TEST(EndToEndTest, BothServersServeTheStandardHealthService) {
  TestCluster cluster("health");
  // Plaintext, so the probes below need no certificate; the TLS port's
  // health service is checked by the security test.
  cluster.UseInsecure();
  cluster.StartScheduler();
  cluster.StartAgent("gpu-a", "V100:1");
  const auto kServing = grpc::health::v1::HealthCheckResponse::SERVING;
  EXPECT_EQ(Health(cluster.address(), ""), kServing);
  EXPECT_EQ(Health(cluster.address(), "joule.v1.SchedulerService"), kServing);
  const std::string agent = cluster.AgentAddress("gpu-a");
  EXPECT_EQ(Health(agent, ""), kServing);
  // The agent's link to the scheduler is a service of its own: SERVING while
  // connected, NOT_SERVING once the scheduler is gone.
  EXPECT_TRUE(WaitFor([&] { return Health(agent, "joule.v1.AgentService") == kServing; }));
  cluster.KillScheduler();
  EXPECT_TRUE(WaitFor([&] {
    return Health(agent, "joule.v1.AgentService") ==
           grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  }));
}

// With TLS on the API port, --health-listen serves the health service alone
// in plaintext, for probes that cannot speak TLS (the kubelet's).
TEST(EndToEndTest, PlaintextHealthPortBesideTheTlsApi) {
  TestCluster cluster("health-port");
  cluster.StartScheduler("127.0.0.1:0", {"--health-listen=127.0.0.1:0"});
  const std::string health = cluster.WaitForLine("scheduler.out", "health on ");
  ASSERT_FALSE(health.empty());
  const auto kServing = grpc::health::v1::HealthCheckResponse::SERVING;
  EXPECT_EQ(Health(health, ""), kServing);
  EXPECT_EQ(Health(health, "joule.v1.SchedulerService"), kServing);
  // Nothing but health is served there: the API is not reachable in
  // plaintext.
  auto stub = v1::SchedulerService::NewStub(
      grpc::CreateChannel(health, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(10)));
  v1::ListJobsRequest request;
  v1::ListJobsResponse response;
  EXPECT_EQ(stub->ListJobs(&context, request, &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace joule
