#include "tests/e2e/test_cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "common/tls_credentials.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace joule {
std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

namespace {

std::vector<std::pair<std::string, std::string>> BaseEnv() {
  std::vector<std::pair<std::string, std::string>> env;
  for (const char* name : {"PATH", "HOME", "TMPDIR"}) {
    if (const char* value = std::getenv(name)) env.emplace_back(name, value);
  }
  return env;
}

std::unique_ptr<TaskProcess> Spawn(
    const std::string& binary, std::vector<std::string> args,
    const std::string& log_prefix,
    const std::vector<std::pair<std::string, std::string>>& extra_env = {}) {
  SpawnOptions options;
  options.path = binary;
  options.args = std::move(args);
  options.env = BaseEnv();
  options.env.insert(options.env.end(), extra_env.begin(), extra_env.end());
  options.stdout_path = log_prefix + ".out";
  options.stderr_path = log_prefix + ".err";
  absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(options);
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? *std::move(process) : nullptr;
}

void KillAndReap(TaskProcess* process) {
  if (process == nullptr) return;
  process->KillGroup();
  WaitFor([&] { return process->Poll().has_value(); }, absl::Seconds(10));
}

// Waits for "listening on HOST:PORT" in `path` past `offset`.
std::string WaitForAddress(const std::string& path, size_t offset) {
  std::string address;
  WaitFor([&] {
    const std::string all = ReadAll(path);
    if (all.size() < offset) return false;
    const std::string out = all.substr(offset);
    const size_t pos = out.find("listening on ");
    if (pos == std::string::npos) return false;
    const size_t end = out.find('\n', pos);
    if (end == std::string::npos) return false;
    address = out.substr(pos + 13, end - pos - 13);
    return true;
  });
  return address;
}

}  // namespace

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", workspace ? workspace : "joule",
                      "/", relative);
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = RealClock::Get()->Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (RealClock::Get()->Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

TestCluster::TestCluster(std::string name) {
  std::string base = ::testing::TempDir();
  if (base.empty() || base.back() != '/') base += "/";
  std::string templ = absl::StrCat(base, name, ".XXXXXX");
  char* made = mkdtemp(templ.data());
  EXPECT_NE(made, nullptr);
  dir_ = templ;
  absl::StatusOr<TestPki> pki = TestPki::Create(dir_ + "/pki");
  EXPECT_TRUE(pki.ok()) << pki.status();
  if (pki.ok()) pki_ = *std::move(pki);
  if (pki_.has_value()) {
    absl::StatusOr<CertFiles> cert = pki_->Scheduler();
    EXPECT_TRUE(cert.ok()) << cert.status();
    if (cert.ok()) scheduler_cert_ = *cert;
  }
  tokens_file_ = dir_ + "/tokens";
  std::ofstream(tokens_file_) << "# made by TestCluster\n";
  chmod(tokens_file_.c_str(), 0600);
  admin_token_file_ = AddToken("admin", "admin");
  // joulectl must not pick up a config file from the machine.
  setenv("JOULE_CONFIG", (dir_ + "/no-joulectl-config.yaml").c_str(), 1);
}

std::string TestCluster::AddToken(const std::string& user, const std::string& role,
                                  const std::string& extra) {
  const int n = ++tokens_made_;
  const std::string token = absl::StrCat("jt_test_", user, "_", n, "_",
                                         absl::ToUnixNanos(absl::Now()));
  std::ofstream(tokens_file_, std::ios::app)
      << "token sha256:" << Sha256Hex(token) << " " << user << " " << role
      << (extra.empty() ? "" : " ") << extra << "\n";
  const std::string path = absl::StrCat(dir_, "/token-", user, "-", n);
  std::ofstream(path) << token << "\n";
  return path;
}

std::vector<std::string> TestCluster::SchedulerSecurityFlags() const {
  if (insecure_) return {"--insecure"};
  return {absl::StrCat("--tls-cert=", scheduler_cert_.cert),
          absl::StrCat("--tls-key=", scheduler_cert_.key),
          absl::StrCat("--tls-ca=", pki_->ca()), absl::StrCat("--tokens-file=", tokens_file_)};
}

std::vector<std::string> TestCluster::CtlFlags() const {
  std::vector<std::string> flags = {absl::StrCat("--scheduler=", address_)};
  if (insecure_) {
    flags.push_back("--insecure");
  } else {
    flags.push_back(absl::StrCat("--ca=", pki_->ca()));
    flags.push_back(absl::StrCat("--token-file=", admin_token_file_));
  }
  return flags;
}

CtlResult TestCluster::CtlWithToken(const std::string& token_file,
                                    std::vector<std::string> args) {
  std::vector<std::string> flags = {absl::StrCat("--scheduler=", address_),
                                    absl::StrCat("--ca=", pki_->ca()),
                                    absl::StrCat("--token-file=", token_file)};
  args.insert(args.begin(), flags.begin(), flags.end());
  return Run("cli/joulectl", std::move(args));
}

TestCluster::~TestCluster() {
  for (Agent& agent : agents_) KillAndReap(agent.process.get());
  KillAndReap(scheduler_.get());
  for (Replica& replica : replicas_) {
    // A stopped process does not die of SIGKILL until it runs again.
    if (replica.process != nullptr) kill(replica.process->pid(), SIGCONT);
    KillAndReap(replica.process.get());
  }
}

void TestCluster::StartReplicas(int count, std::vector<std::string> flags) {
  std::vector<std::string> addresses;
  for (int i = 0; i < count; ++i) {
    Replica replica;
    replica.address = "127.0.0.1:0";
    replica.flags = flags;
    replicas_.push_back(std::move(replica));
    SpawnReplica(i);
    addresses.push_back(replicas_[i].address);
  }
  address_ = absl::StrJoin(addresses, ",");
}

void TestCluster::SpawnReplica(int index) {
  Replica& replica = replicas_[index];
  std::vector<std::string> args = {absl::StrCat("--listen=", replica.address),
                                   absl::StrCat("--data-dir=", dir_, "/data-", index),
                                   "--tick-ms=50", "--stop-grace=5"};
  const std::vector<std::string> security = SchedulerSecurityFlags();
  args.insert(args.end(), security.begin(), security.end());
  args.insert(args.end(), replica.flags.begin(), replica.flags.end());
  const std::string log = absl::StrCat(dir_, "/scheduler-", index);
  const size_t offset = ReadAll(log + ".out").size();
  replica.process = Spawn(RunfilePath("scheduler/joule-scheduler"), args, log);
  ASSERT_NE(replica.process, nullptr);
  replica.address = WaitForAddress(log + ".out", offset);
  ASSERT_FALSE(replica.address.empty())
      << "scheduler replica " << index << " did not start: " << ReadAll(log + ".err");
}

void TestCluster::RestartReplica(int index) { SpawnReplica(index); }

void TestCluster::SignalReplica(int index, int signal) {
  Replica& replica = replicas_[index];
  ASSERT_NE(replica.process, nullptr);
  kill(replica.process->pid(), signal);
  if (signal == SIGKILL) {
    ASSERT_TRUE(WaitFor([&] { return replica.process->Poll().has_value(); }));
  }
}

bool TestCluster::ReplicaRunning(int index) {
  Replica& replica = replicas_[index];
  return replica.process != nullptr && !replica.process->Poll().has_value();
}

int TestCluster::LeaderIndex() {
  for (int i = 0; i < static_cast<int>(replicas_.size()); ++i) {
    if (!ReplicaRunning(i)) continue;
    TlsFiles files;
    if (!insecure_) files.ca_file = pki_->ca();
    auto channel = grpc::CreateChannel(replicas_[i].address,
                                       insecure_ ? grpc::InsecureChannelCredentials()
                                                 : MakeClientTlsCredentials(files));
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("joule.v1.SchedulerService");
    grpc::health::v1::HealthCheckResponse response;
    if (stub->Check(&context, request, &response).ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return i;
    }
  }
  return -1;
}

int TestCluster::WaitForLeader(int not_index, absl::Duration timeout) {
  int leader = -1;
  WaitFor(
      [&] {
        leader = LeaderIndex();
        return leader >= 0 && leader != not_index;
      },
      timeout);
  return leader >= 0 && leader != not_index ? leader : -1;
}

std::string TestCluster::ReplicaLog(int index) const {
  return ReadAll(absl::StrCat(dir_, "/scheduler-", index, ".err"));
}

void TestCluster::StartScheduler(const std::string& listen,
                                 std::vector<std::string> extra_flags) {
  std::vector<std::string> args = {absl::StrCat("--listen=", listen),
                                   absl::StrCat("--data-dir=", dir_, "/data"),
                                   "--tick-ms=50", "--stop-grace=5"};
  const std::vector<std::string> security = SchedulerSecurityFlags();
  args.insert(args.end(), security.begin(), security.end());
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  const std::string log = absl::StrCat(dir_, "/scheduler");
  // Each start appends to the same log; remember where this one begins.
  const size_t offset = ReadAll(log + ".out").size();
  scheduler_ = Spawn(RunfilePath("scheduler/joule-scheduler"), args, log);
  ASSERT_NE(scheduler_, nullptr);
  address_ = WaitForAddress(log + ".out", offset);
  ASSERT_FALSE(address_.empty()) << "scheduler did not start: " << ReadAll(log + ".err");
}

void TestCluster::KillScheduler() {
  ASSERT_NE(scheduler_, nullptr);
  kill(scheduler_->pid(), SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Poll().has_value(); }));
  scheduler_.reset();
}

void TestCluster::StartAgent(const std::string& node, const std::string& simulate) {
  std::vector<std::string> args = {
      absl::StrCat("--scheduler=", address_), absl::StrCat("--node-name=", node),
      absl::StrCat("--work-dir=", dir_, "/agent-", node), "--telemetry-period=0.2",
      "--cpus=8", "--memory=16Gi", "--stop-grace=2", "--listen=127.0.0.1:0"};
  // Jobs of the test's users run as root here (the tests' files are
  // root's); the security tests map their users to unprivileged uids.
  const std::string task_users = absl::StrCat(dir_, "/task-users");
  if (ReadAll(task_users).empty()) {
    // The example jobs' owners too.
    std::ofstream(task_users)
        << "admin 0 0\nlocal 0 0\nalice 0 0\nbob 0 0\ncarol 0 0\n";
  }
  args.push_back(absl::StrCat("--task-users=", task_users));
  args.push_back("--allow-root-tasks");
  // Ten rendezvous ports of its own per agent: tests run in parallel on one
  // host, where every agent's ports are the same ports (below the
  // ephemeral range, which outgoing connections take from).
  static std::atomic<int> agents_started{0};
  const int slot = (static_cast<int>(getpid()) * 16 + agents_started++) % 1200;
  args.push_back(absl::StrFormat("--task-ports=%d-%d", 20000 + 10 * slot, 20009 + 10 * slot));
  if (insecure_) {
    args.push_back("--insecure");
  } else {
    absl::StatusOr<CertFiles> cert = pki_->Node(node);
    EXPECT_TRUE(cert.ok()) << cert.status();
    if (cert.ok()) {
      args.push_back(absl::StrCat("--tls-ca=", pki_->ca()));
      args.push_back(absl::StrCat("--tls-cert=", cert->cert));
      args.push_back(absl::StrCat("--tls-key=", cert->key));
    }
  }
  // Flags set with SetAgentFlags replace the defaults of the same name.
  for (const std::string& flag : agent_flags_) {
    const std::string name = flag.substr(0, flag.find('='));
    args.erase(std::remove_if(args.begin(), args.end(),
                              [&](const std::string& arg) {
                                return arg.substr(0, arg.find('=')) == name;
                              }),
               args.end());
    args.push_back(flag);
  }
  if (!simulate.empty()) args.push_back(absl::StrCat("--simulate=", simulate));
  Agent agent;
  agent.node = node;
  const std::string log = absl::StrCat(dir_, "/agent-", node);
  // A restarted agent appends to the same log; look past the old lines.
  const size_t offset = ReadAll(log + ".out").size();
  agent.process = Spawn(RunfilePath("agent/joule-agent"), args, log, agent_env_);
  ASSERT_NE(agent.process, nullptr);
  agent.address = WaitForAddress(log + ".out", offset);
  ASSERT_FALSE(agent.address.empty()) << "agent " << node << " did not start";
  agents_.push_back(std::move(agent));
  ASSERT_TRUE(WaitFor([&] {
    CtlResult nodes = Ctl({"nodes"});
    for (absl::string_view row : absl::StrSplit(nodes.out, '\n')) {
      if (absl::StartsWith(row, absl::StrCat(node, " ")) && absl::StrContains(row, "READY")) {
        return true;
      }
    }
    return false;
  })) << "agent " << node << " did not register";
}

void TestCluster::KillAgent(const std::string& node, int signal) {
  for (Agent& agent : agents_) {
    if (agent.node != node) continue;
    kill(agent.process->pid(), signal);
    ASSERT_TRUE(WaitFor([&] { return agent.process->Poll().has_value(); }));
  }
}

std::string TestCluster::AgentAddress(const std::string& node) const {
  for (const Agent& agent : agents_) {
    if (agent.node == node) return agent.address;
  }
  return "";
}

CtlResult TestCluster::Ctl(std::vector<std::string> args) {
  const std::vector<std::string> flags = CtlFlags();
  args.insert(args.begin(), flags.begin(), flags.end());
  return Run("cli/joulectl", std::move(args));
}

CtlResult TestCluster::Run(const std::string& binary, std::vector<std::string> args,
                           std::vector<std::pair<std::string, std::string>> env) {
  const std::string log = absl::StrCat(dir_, "/run-", ++ctl_runs_);
  std::unique_ptr<TaskProcess> ctl = Spawn(RunfilePath(binary), args, log, env);
  CtlResult result;
  if (ctl == nullptr) return result;
  std::optional<ExitStatus> exit;
  if (!WaitFor([&] { return (exit = ctl->Poll()).has_value(); }, absl::Seconds(60))) {
    KillAndReap(ctl.get());
    ADD_FAILURE() << binary << " did not finish";
    return result;
  }
  result.exit_code = exit->exit_code;
  result.out = ReadAll(log + ".out");
  result.err = ReadAll(log + ".err");
  return result;
}

absl::StatusOr<v1::Job> TestCluster::GetJob(const std::string& job_id) {
  CtlResult result = Ctl({"-o", "json", "get", job_id});
  if (result.exit_code != 0) return absl::UnknownError(result.err);
  v1::Job job;
  auto status = google::protobuf::util::JsonStringToMessage(result.out, &job);
  if (!status.ok()) return absl::InternalError(status.ToString());
  return job;
}

absl::StatusOr<v1::ListJobsResponse> TestCluster::ListJobs() {
  CtlResult result = Ctl({"-o", "json", "list"});
  if (result.exit_code != 0) return absl::UnknownError(result.err);
  v1::ListJobsResponse list;
  auto status = google::protobuf::util::JsonStringToMessage(result.out, &list);
  if (!status.ok()) return absl::InternalError(status.ToString());
  return list;
}

std::string TestCluster::WaitForLine(const std::string& log, const std::string& prefix) {
  std::string found;
  WaitFor(
      [&] {
        for (absl::string_view line : absl::StrSplit(ReadAll(absl::StrCat(dir_, "/", log)), '\n')) {
          if (absl::StartsWith(line, prefix)) {
            found = std::string(line.substr(prefix.size()));
            return true;
          }
        }
        return false;
      },
      absl::Seconds(10));
  return found;
}

std::string TestCluster::WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = absl::StrCat(dir_, "/", name);
  std::ofstream(path) << contents;
  return path;
}

}  // namespace joule
