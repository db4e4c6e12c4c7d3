#ifndef JOULE_TESTS_E2E_TEST_CLUSTER_H_
#define JOULE_TESTS_E2E_TEST_CLUSTER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/process/task_process.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "tests/e2e/test_pki.h"

namespace joule {

// The contents of the file at `path` ("" when it cannot be read).
std::string ReadAll(const std::string& path);

// Path of a binary in this test's runfiles, e.g. "scheduler/joule-scheduler".
std::string RunfilePath(const std::string& relative);

// Polls `condition` every 20 ms until it holds or `timeout` passes. Tests
// wait for behaviour this way instead of sleeping a fixed time.
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = absl::Seconds(30));

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A real cluster on loopback for one test: a joule-scheduler binary, any
// number of joule-agent binaries with simulated devices, and joulectl runs.
// Everything it started is killed (whole process groups) when it goes away.
//
// Secure by default, as in production: a CA made for the test (TestPki)
// signs the scheduler's certificate and one certificate per agent node;
// joulectl uses a bearer token of the admin "admin" from the scheduler's
// --tokens-file. Jobs run as their owner, mapped to uid 0 on the agents
// (--task-users; the tests write into their own root-owned directories).
// UseInsecure() before starting anything gives the --insecure setup.
class TestCluster {
 public:
  explicit TestCluster(std::string name);
  ~TestCluster();

  const std::string& dir() const { return dir_; }
  const std::string& address() const { return address_; }

  // Plaintext on loopback for everything started from now on.
  void UseInsecure() { insecure_ = true; }
  bool insecure() const { return insecure_; }
  TestPki& pki() { return *pki_; }
  // Adds a token for `user` with `role` ("user", "operator", "admin") to
  // the scheduler's token file, with extra words (e.g. "expires=...") and
  // returns the path of a file holding the token, for joulectl
  // --token-file. The scheduler re-reads the file within 2 s.
  std::string AddToken(const std::string& user, const std::string& role,
                       const std::string& extra = "");
  const std::string& admin_token_file() const { return admin_token_file_; }
  // The pid of the scheduler started by StartScheduler (0 if none).
  int64_t scheduler_pid() const { return scheduler_ != nullptr ? scheduler_->pid() : 0; }
  // Runs joulectl with `token_file` instead of the admin's token.
  CtlResult CtlWithToken(const std::string& token_file, std::vector<std::string> args);
  // The joulectl flags that reach this cluster's scheduler as the admin
  // (address, CA, token), for tests that run joulectl themselves.
  std::vector<std::string> CtlFlags() const;
  // The scheduler flags for this cluster's security (TLS files and tokens,
  // or --insecure).
  std::vector<std::string> SchedulerSecurityFlags() const;

  // Starts the scheduler on `listen` (port 0 picks one) with the data
  // directory <dir>/data, and waits for its "listening on" line.
  void StartScheduler(const std::string& listen = "127.0.0.1:0",
                      std::vector<std::string> extra_flags = {});
  // Flags added to every agent started from now on.
  void SetAgentFlags(std::vector<std::string> flags) { agent_flags_ = std::move(flags); }
  // Environment entries added for every agent started from now on.
  void SetAgentEnv(std::vector<std::pair<std::string, std::string>> env) {
    agent_env_ = std::move(env);
  }
  // Runs `binary` (a runfiles path) with `args` and `env` added to the base
  // environment, waits for it, and returns its exit code and output.
  CtlResult Run(const std::string& binary, std::vector<std::string> args,
                std::vector<std::pair<std::string, std::string>> env = {});
  // kill -9 of the scheduler.
  void KillScheduler();

  // Several schedulers on one etcd: `count` replicas with `flags` (which
  // name the store, e.g. --store=etcd://...), each on its own port, all
  // started before any agent. address() becomes the comma-separated list of
  // every replica, which joulectl and the agents follow to the leader.
  void StartReplicas(int count, std::vector<std::string> flags);
  // Starts replica `index` again on its old port (after a kill).
  void RestartReplica(int index);
  // Sends `signal`; for SIGKILL also waits for the process to go.
  void SignalReplica(int index, int signal);
  // The replica whose health service says it serves the API (the leader),
  // or -1. Asks each replica with a 1 s deadline.
  int LeaderIndex();
  // Waits until some replica other than `not_index` leads; returns it or -1.
  int WaitForLeader(int not_index, absl::Duration timeout);
  // Everything replica `index` has logged to stderr.
  std::string ReplicaLog(int index) const;
  int replica_count() const { return static_cast<int>(replicas_.size()); }
  const std::string& ReplicaAddress(int index) const { return replicas_[index].address; }
  // Whether replica `index`'s process is alive.
  bool ReplicaRunning(int index);
  // Starts an agent named `node` simulating `simulate` (may be empty) and
  // waits until the scheduler lists the node as READY.
  void StartAgent(const std::string& node, const std::string& simulate);
  void KillAgent(const std::string& node, int signal);
  // The agent's own gRPC address (health service).
  std::string AgentAddress(const std::string& node) const;

  // Runs joulectl against the scheduler and waits for it.
  CtlResult Ctl(std::vector<std::string> args);
  // Runs `joulectl -o json get JOB` and parses the job.
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs();
  // The rest of the first line of <dir>/<log> that starts with `prefix`,
  // waiting up to 10 s for it (e.g. ("scheduler.out", "metrics on ")).
  std::string WaitForLine(const std::string& log, const std::string& prefix);
  // Writes a file under dir() and returns its path.
  std::string WriteFile(const std::string& name, const std::string& contents);

 private:
  struct Agent {
    std::string node;
    std::string address;
    std::unique_ptr<TaskProcess> process;
  };

  struct Replica {
    std::string address;
    std::vector<std::string> flags;
    std::unique_ptr<TaskProcess> process;
  };
  void SpawnReplica(int index);

  std::string dir_;
  std::string address_;
  std::vector<Replica> replicas_;
  std::unique_ptr<TaskProcess> scheduler_;
  std::vector<Agent> agents_;
  std::atomic<int> ctl_runs_{0};
  std::vector<std::string> agent_flags_;
  std::vector<std::pair<std::string, std::string>> agent_env_;
  bool insecure_ = false;
  std::optional<TestPki> pki_;
  CertFiles scheduler_cert_;
  std::string tokens_file_;
  std::string admin_token_file_;
  int tokens_made_ = 0;
};

}  // namespace joule

#endif  // JOULE_TESTS_E2E_TEST_CLUSTER_H_
