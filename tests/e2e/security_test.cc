// Security end to end: the real scheduler, agents and joulectl over TLS
// with certificates made by the test (TestPki), tokens, tasks as their
// owners, and the limits on what an unauthenticated peer can send. Each test
// names the line of issue 12's "Tried as a new user would" that it covers.
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/tls_credentials.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Trim(const std::string& text) {
  return std::string(absl::StripAsciiWhitespace(text));
}

// A line "Key:\tvalue..." of /proc/PID/status.
std::string ProcStatus(int64_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, key + ":")) return Trim(line.substr(key.size() + 1));
  }
  return "";
}

int64_t RssKib(int64_t pid) {
  int64_t kib = 0;
  const std::string rss = ProcStatus(pid, "VmRSS");
  (void)absl::SimpleAtoi(rss.substr(0, rss.find(' ')), &kib);
  return kib;
}

bool ProcessGone(int64_t pid) {
  if (kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH) return true;
  // A zombie has exited; it only waits for its parent.
  return ProcStatus(pid, "State").rfind("Z", 0) == 0;
}

// A direct agent stream to the scheduler with the given certificate, as a
// real agent would open it.
class RawAgent {
 public:
  RawAgent(const std::string& address, const std::string& ca, const CertFiles* cert) {
    TlsFiles files;
    files.ca_file = ca;
    if (cert != nullptr) {
      files.cert_file = cert->cert;
      files.key_file = cert->key;
    }
    channel_ = grpc::CreateChannel(address, MakeClientTlsCredentials(files));
    stub_ = v1::AgentService::NewStub(channel_);
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    stream_ = stub_->Connect(&context_);
  }

  // Registers as `node`; returns the status the stream ends with, or OK
  // when the scheduler acknowledged the registration.
  grpc::Status Register(const std::string& node) {
    v1::AgentMessage message;
    message.mutable_register_()->mutable_node()->set_name(node);
    message.mutable_register_()->mutable_node()->set_cpus(1);
    message.mutable_register_()->mutable_node()->set_memory_bytes(1 << 30);
    stream_->Write(message);
    v1::SchedulerCommand command;
    if (stream_->Read(&command) && command.has_register_ack()) return grpc::Status::OK;
    return Finish();
  }

  grpc::Status Finish() {
    stream_->WritesDone();
    return stream_->Finish();
  }

  // Waits for the scheduler to end the stream, sending nothing.
  grpc::Status WaitForServerClose() {
    v1::SchedulerCommand command;
    while (stream_->Read(&command)) {
    }
    return stream_->Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerCommand>> stream_;
};

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Task directories must be reachable by the tasks' unprivileged uids,
    // so the agents work under a directory others may traverse (the test's
    // own temporary directory is inside root's home).
    char templ[] = "/tmp/joule-security.XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    work_root_ = templ;
    chmod(work_root_.c_str(), 0711);
  }
  void TearDown() override {
    if (!work_root_.empty()) {
      (void)system(absl::StrCat("rm -rf '", work_root_, "'").c_str());
    }
  }

  // A cluster whose agents run alice's and bob's tasks as uids 60001 and
  // 60002, with tokens for alice, bob and an operator.
  void StartCluster(TestCluster& cluster, const std::string& node = "gpu-a") {
    cluster.WriteFile("task-users",
                      "admin 0 0\nlocal 0 0\nalice 60001 60001\nbob 60002 60002\n");
    alice_ = cluster.AddToken("alice", "user");
    bob_ = cluster.AddToken("bob", "user");
    ops_ = cluster.AddToken("ops", "operator");
    cluster.StartScheduler("127.0.0.1:0", {"--agent-register-timeout=1"});
    cluster.SetAgentFlags({absl::StrCat("--work-dir=", work_root_, "/agent")});
    cluster.StartAgent(node, "V100:2");
  }

  std::string SubmitAs(TestCluster& cluster, const std::string& token,
                       std::vector<std::string> args) {
    args.insert(args.begin(), {"submit", "-q", "--name", "t", "--"});
    CtlResult submit = cluster.CtlWithToken(token, args);
    EXPECT_EQ(submit.exit_code, 0) << submit.err;
    return Trim(submit.out);
  }

  int64_t WaitForRunningPid(TestCluster& cluster, const std::string& id) {
    int64_t pid = 0;
    WaitFor([&] {
      absl::StatusOr<v1::Job> job = cluster.GetJob(id);
      if (!job.ok() || job->tasks_size() == 0 ||
          job->tasks(0).state() != v1::TASK_STATE_RUNNING) {
        return false;
      }
      pid = job->tasks(0).pid();
      return pid > 0;
    });
    return pid;
  }

  std::string work_root_;
  std::string alice_, bob_, ops_;
};

// "A second joule-agent --node-name=<existing node> ... takes that node
// over": a certificate names one node, and no other identity can register
// as it or displace its stream.
TEST_F(SecurityTest, AgentsProveTheirNodeAndCannotSpeakForAnother) {
  TestCluster cluster("sec-agents");
  StartCluster(cluster);
  const std::string address = cluster.address();
  // A task runs on gpu-a, so a takeover would show as it being lost.
  const std::string id = SubmitAs(cluster, alice_, {"/bin/sleep", "60"});
  ASSERT_GT(WaitForRunningPid(cluster, id), 0);

  // No client certificate.
  EXPECT_EQ(RawAgent(address, cluster.pki().ca(), nullptr).Register("gpu-a").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A certificate from another CA: the TLS handshake fails.
  absl::StatusOr<TestPki> rogue = TestPki::Create(cluster.dir() + "/rogue-pki", "Rogue CA");
  ASSERT_TRUE(rogue.ok());
  absl::StatusOr<CertFiles> rogue_cert = rogue->Node("gpu-a");
  ASSERT_TRUE(rogue_cert.ok());
  EXPECT_FALSE(RawAgent(address, cluster.pki().ca(), &*rogue_cert).Register("gpu-a").ok());
  // A valid certificate for node gpu-b cannot register as gpu-a ...
  absl::StatusOr<CertFiles> b_cert = cluster.pki().Node("gpu-b");
  ASSERT_TRUE(b_cert.ok());
  grpc::Status as_a = RawAgent(address, cluster.pki().ca(), &*b_cert).Register("gpu-a");
  EXPECT_EQ(as_a.error_code(), grpc::StatusCode::PERMISSION_DENIED) << as_a.error_message();
  EXPECT_THAT(as_a.error_message(), HasSubstr("names node gpu-b"));
  // ... a user certificate cannot open an agent stream at all ...
  absl::StatusOr<CertFiles> user_cert = cluster.pki().User("alice");
  ASSERT_TRUE(user_cert.ok());
  EXPECT_EQ(RawAgent(address, cluster.pki().ca(), &*user_cert).Register("gpu-a").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // ... but registers as itself.
  EXPECT_TRUE(RawAgent(address, cluster.pki().ca(), &*b_cert).Register("gpu-b").ok());

  // gpu-a's stream was never displaced: its task still runs.
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->tasks(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(job->retries(), 0);
  CtlResult nodes = cluster.Ctl({"nodes"});
  EXPECT_THAT(nodes.out, HasSubstr("gpu-a"));

  // A stream that never registers is closed after --agent-register-timeout.
  {
    RawAgent silent(address, cluster.pki().ca(), &*b_cert);
    const absl::Time start = absl::Now();
    grpc::Status closed = silent.WaitForServerClose();
    EXPECT_FALSE(closed.ok());
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  }
}

// "anyone who can reach a scheduler port runs any command": tokens, and
// what each role may do.
TEST_F(SecurityTest, TokensAndRolesDecideWhoSeesAndChangesWhat) {
  TestCluster cluster("sec-roles");
  const std::string expired =
      cluster.AddToken("carol", "user", "expires=2020-01-01T00:00:00Z");
  StartCluster(cluster);

  // No token, a wrong token, an expired token.
  CtlResult none = cluster.Run("cli/joulectl", {absl::StrCat("--scheduler=", cluster.address()),
                                                absl::StrCat("--ca=", cluster.pki().ca()),
                                                "list"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("UNAUTHENTICATED"));
  const std::string wrong = cluster.WriteFile("wrong-token", "jt_not_a_token\n");
  EXPECT_THAT(cluster.CtlWithToken(wrong, {"list"}).err, HasSubstr("UNAUTHENTICATED"));
  CtlResult late = cluster.CtlWithToken(expired, {"list"});
  EXPECT_THAT(late.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(late.err, HasSubstr("expired"));
  // Plaintext to a TLS scheduler gets nowhere.
  CtlResult plain = cluster.Run("cli/joulectl",
                                {absl::StrCat("--scheduler=", cluster.address()), "--insecure",
                                 "--timeout=3", "list"});
  EXPECT_NE(plain.exit_code, 0);

  // alice's job, with a secret in its environment.
  CtlResult submitted = cluster.CtlWithToken(
      alice_, {"submit", "-q", "--name", "t", "--env", "SECRET=hunter2", "--", "/bin/sleep",
               "60"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  const std::string id = Trim(submitted.out);
  ASSERT_FALSE(id.empty());
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->spec().user(), "alice");  // The authenticated identity.

  // bob can neither see, watch, cancel, explain nor read the logs of it.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"get", id}, {"cancel", id}, {"logs", id}, {"explain", id},
        {"watch", id}}) {
    CtlResult denied = cluster.CtlWithToken(bob_, args);
    EXPECT_EQ(denied.exit_code, 1) << args[0];
    EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED")) << args[0] << ": " << denied.err;
  }
  EXPECT_THAT(cluster.CtlWithToken(bob_, {"list"}).out, Not(HasSubstr(id)));
  // Users do not manage nodes or caps.
  EXPECT_THAT(cluster.CtlWithToken(bob_, {"nodes"}).err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(cluster.CtlWithToken(bob_, {"cap", "gpu-a", "--gpu", "0", "--watts", "150"}).err,
              HasSubstr("PERMISSION_DENIED"));
  // A user cannot submit as someone else.
  const std::string spec = cluster.WriteFile(
      "as-bob.yaml", "name: x\ntype: training\nuser: bob\ncommand: /bin/true\n");
  CtlResult as_bob = cluster.CtlWithToken(alice_, {"submit", "-f", spec});
  EXPECT_EQ(as_bob.exit_code, 1);
  EXPECT_THAT(as_bob.err, HasSubstr("PERMISSION_DENIED"));

  // alice sees her secret; the operator sees everything and may cancel.
  CtlResult mine = cluster.CtlWithToken(alice_, {"-o", "json", "get", id});
  EXPECT_THAT(mine.out, HasSubstr("hunter2"));
  EXPECT_THAT(cluster.CtlWithToken(ops_, {"list"}).out, HasSubstr(id));
  EXPECT_THAT(cluster.CtlWithToken(ops_, {"-o", "json", "get", id}).out, HasSubstr("hunter2"));
  EXPECT_EQ(cluster.CtlWithToken(ops_, {"nodes"}).exit_code, 0);
  CtlResult cancelled = cluster.CtlWithToken(ops_, {"cancel", id});
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.err;

  // A token added to the file works without a restart.
  const std::string dave = cluster.AddToken("dave", "user");
  EXPECT_TRUE(WaitFor([&] { return cluster.CtlWithToken(dave, {"list"}).exit_code == 0; },
                      absl::Seconds(10)));
  // A user certificate works instead of a token.
  absl::StatusOr<CertFiles> erin = cluster.pki().User("erin");
  ASSERT_TRUE(erin.ok());
  CtlResult by_cert = cluster.Run(
      "cli/joulectl", {absl::StrCat("--scheduler=", cluster.address()),
                       absl::StrCat("--ca=", cluster.pki().ca()),
                       absl::StrCat("--cert=", erin->cert), absl::StrCat("--key=", erin->key),
                       "submit", "-q", "--name", "c", "--", "/bin/true"});
  EXPECT_EQ(by_cert.exit_code, 0) << by_cert.err;
  absl::StatusOr<v1::Job> erins = cluster.GetJob(Trim(by_cert.out));
  ASSERT_TRUE(erins.ok());
  EXPECT_EQ(erins->spec().user(), "erin");
}

// "the task runs as uid 0 and can read /etc/shadow"; "A task's setsid child
// survives cancel"; the logs are 0644.
TEST_F(SecurityTest, TasksRunAsTheirOwnerAndNothingOfThemSurvives) {
  TestCluster cluster("sec-tasks");
  StartCluster(cluster);
  // The task starts a setsid child that would outlive a process-group kill
  // and prints its pid.
  const std::string id = SubmitAs(
      cluster, alice_,
      {"/bin/sh", "-c", "setsid sleep 1000 & echo child=$!; cat /etc/shadow; exec sleep 1000"});
  const int64_t pid = WaitForRunningPid(cluster, id);
  ASSERT_GT(pid, 0);
  EXPECT_THAT(ProcStatus(pid, "Uid"), HasSubstr("60001"));
  EXPECT_EQ(ProcStatus(pid, "Uid").substr(0, 5), "60001");
  EXPECT_EQ(ProcStatus(pid, "Gid").substr(0, 5), "60001");
  EXPECT_EQ(ProcStatus(pid, "NoNewPrivs"), "1");

  int64_t child = 0;
  ASSERT_TRUE(WaitFor([&] {
    CtlResult logs = cluster.CtlWithToken(alice_, {"logs", "--stderr", id});
    const size_t at = logs.out.find("child=");
    if (at == std::string::npos) return false;
    return absl::SimpleAtoi(Trim(logs.out.substr(at + 6, logs.out.find('\n', at) - at - 6)),
                            &child) &&
           child > 0;
  }));
  CtlResult logs = cluster.CtlWithToken(alice_, {"logs", "--stderr", id});
  EXPECT_THAT(logs.out, HasSubstr("Permission denied"));  // /etc/shadow
  EXPECT_EQ(ProcStatus(child, "Uid").substr(0, 5), "60001");

  // bob's task cannot read alice's task directory.
  absl::StatusOr<v1::Job> alices = cluster.GetJob(id);
  ASSERT_TRUE(alices.ok());
  const std::string peek = SubmitAs(
      cluster, bob_,
      {"/bin/sh", "-c",
       absl::StrCat("ls ", work_root_, "/agent/tasks/", alices->tasks(0).task_id(),
                    "/ ; echo exit=$?; sleep 1000")});
  ASSERT_GT(WaitForRunningPid(cluster, peek), 0);
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(cluster.CtlWithToken(bob_, {"logs", "--stderr", peek}).out,
                             "exit=");
  }));
  EXPECT_THAT(cluster.CtlWithToken(bob_, {"logs", "--stderr", peek}).out,
              HasSubstr("Permission denied"));

  // Task logs are readable by their owner only.
  struct stat info;
  bool found = false;
  const std::string find = absl::StrCat(cluster.dir(), "/logs-found");
  ASSERT_EQ(system(absl::StrCat("find '", work_root_, "' -name stdout.log > '", find, "'").c_str()),
            0);
  for (absl::string_view path : absl::StrSplit(ReadAll(find), '\n', absl::SkipEmpty())) {
    ASSERT_EQ(stat(std::string(path).c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0077, 0) << path;
    found = true;
  }
  EXPECT_TRUE(found);

  // Cancel: the task and its setsid child are gone.
  CtlResult cancel = cluster.CtlWithToken(alice_, {"cancel", id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid) && ProcessGone(child); },
                      absl::Seconds(30)))
      << "task " << pid << " or its setsid child " << child << " survived the cancel";
  EXPECT_EQ(cluster.CtlWithToken(ops_, {"cancel", peek}).exit_code, 0);
}

// "A 60 MB SubmitJob (30 million empty args) grows the scheduler by 2.5 GB":
// refused before it is decoded.
TEST_F(SecurityTest, OversizedRequestsAreRefusedBeforeTheyCostMemory) {
  TestCluster cluster("sec-size");
  cluster.StartScheduler();
  TlsFiles files;
  files.ca_file = cluster.pki().ca();
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(128 << 20);
  auto stub = v1::SchedulerService::NewStub(
      grpc::CreateCustomChannel(cluster.address(), MakeClientTlsCredentials(files), args));
  const std::string token = Trim(ReadAll(cluster.admin_token_file()));

  auto submit = [&](int args_count) {
    v1::SubmitJobRequest request;
    request.mutable_spec()->set_name("big");
    request.mutable_spec()->set_command("/bin/true");
    for (int i = 0; i < args_count; ++i) request.mutable_spec()->add_args("");
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::Job job;
    return stub->SubmitJob(&context, request, &job);
  };
  const int64_t pid = cluster.scheduler_pid();
  const int64_t before = RssKib(pid);
  // 60 MB: over the server's limit.
  grpc::Status huge = submit(30'000'000);
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << huge.error_message();
  // 4 MB of empty strings: under the server's limit, over SubmitJob's.
  grpc::Status big = submit(2'000'000);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  EXPECT_THAT(big.error_message(), HasSubstr("at most"));
  const int64_t after = RssKib(pid);
  EXPECT_LT(after - before, 100 * 1024) << "RSS " << before << " -> " << after << " KiB";
  std::cout << "scheduler RSS " << before << " KiB -> " << after
            << " KiB after a 60 MB and a 4 MB SubmitJob\n";
  // A normal submission still works.
  EXPECT_TRUE(submit(3).ok());
}

// Plaintext only on purpose, and then on loopback only.
TEST_F(SecurityTest, PlaintextNeedsAFlagAndLoopback) {
  TestCluster cluster("sec-plain");
  CtlResult no_tls = cluster.Run("scheduler/joule-scheduler",
                                 {"--listen=127.0.0.1:0", absl::StrCat("--data-dir=", cluster.dir(), "/d1")});
  EXPECT_EQ(no_tls.exit_code, 2);
  EXPECT_THAT(no_tls.err, HasSubstr("--insecure"));
  CtlResult wide = cluster.Run("scheduler/joule-scheduler",
                               {"--listen=0.0.0.0:0", "--insecure",
                                absl::StrCat("--data-dir=", cluster.dir(), "/d2")});
  EXPECT_EQ(wide.exit_code, 2);
  EXPECT_THAT(wide.err, HasSubstr("loopback"));
  CtlResult agent = cluster.Run("agent/joule-agent",
                                {"--listen=0.0.0.0:0", "--insecure", "--node-name=a"});
  EXPECT_EQ(agent.exit_code, 2);
  EXPECT_THAT(agent.err, HasSubstr("loopback"));
  CtlResult agent_no_tls = cluster.Run("agent/joule-agent", {"--node-name=a"});
  EXPECT_EQ(agent_no_tls.exit_code, 2);
  EXPECT_THAT(agent_no_tls.err, HasSubstr("--tls-ca"));
  // Every port beyond loopback authenticates: /metrics needs basic auth there.
  std::vector<std::string> open_metrics = cluster.SchedulerSecurityFlags();
  open_metrics.insert(open_metrics.end(),
                      {"--listen=127.0.0.1:0", "--metrics-listen=0.0.0.0:0",
                       absl::StrCat("--data-dir=", cluster.dir(), "/d3")});
  CtlResult metrics = cluster.Run("scheduler/joule-scheduler", open_metrics);
  EXPECT_EQ(metrics.exit_code, 2);
  EXPECT_THAT(metrics.err, HasSubstr("--metrics-auth-file"));
  CtlResult insecure_metrics = cluster.Run(
      "scheduler/joule-scheduler",
      {"--listen=127.0.0.1:0", "--insecure", "--metrics-listen=0.0.0.0:0",
       absl::StrCat("--data-dir=", cluster.dir(), "/d4")});
  EXPECT_EQ(insecure_metrics.exit_code, 2);
  EXPECT_THAT(insecure_metrics.err, HasSubstr("loopback"));
}

// A certificate rotated in place is used without a restart.
TEST_F(SecurityTest, RotatedCertificatesAreUsedWithoutARestart) {
  TestCluster cluster("sec-rotate");
  cluster.StartScheduler();
  ASSERT_EQ(cluster.Ctl({"list"}).exit_code, 0);
  // A new CA issues the scheduler a new certificate, written over the old
  // files the way Kubernetes updates a Secret (rename into place).
  absl::StatusOr<TestPki> next = TestPki::Create(cluster.dir() + "/next-pki", "Next CA");
  ASSERT_TRUE(next.ok());
  absl::StatusOr<CertFiles> cert = next->Scheduler();
  ASSERT_TRUE(cert.ok());
  const std::vector<std::string> flags = cluster.SchedulerSecurityFlags();
  const std::string old_cert = flags[0].substr(strlen("--tls-cert="));
  const std::string old_key = flags[1].substr(strlen("--tls-key="));
  ASSERT_EQ(rename(cert->key.c_str(), old_key.c_str()), 0);
  ASSERT_EQ(rename(cert->cert.c_str(), old_cert.c_str()), 0);
  std::vector<std::string> with_next = cluster.CtlFlags();
  with_next[1] = absl::StrCat("--ca=", next->ca());
  with_next.insert(with_next.end(), {"--timeout=3", "list"});
  CtlResult last;
  EXPECT_TRUE(WaitFor(
      [&] { return (last = cluster.Run("cli/joulectl", with_next)).exit_code == 0; },
      absl::Seconds(30)))
      << "the scheduler never served the rotated certificate: " << last.err
      << ReadAll(cluster.dir() + "/scheduler.err").substr(0, 3000);
  // Clients that only trust the old CA are now refused.
  std::vector<std::string> old_ca = cluster.CtlFlags();
  old_ca.insert(old_ca.end(), {"--timeout=3", "list"});
  EXPECT_NE(cluster.Run("cli/joulectl", old_ca).exit_code, 0);
}

// "An HTTP/2 PING flood grows the agent to about 375 MB": the ping policy
// ends the connection, and the agent stays small.
TEST_F(SecurityTest, PingFloodEndsTheConnection) {
  TestCluster cluster("sec-ping");
  cluster.UseInsecure();
  cluster.StartScheduler();
  cluster.StartAgent("gpu-a", "V100:1");
  const std::string address = cluster.AgentAddress("gpu-a");
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  out += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // Empty SETTINGS.
  const std::string ping("\x00\x00\x08\x06\x00\x00\x00\x00\x00" "12345678", 17);
  for (int i = 0; i < 2000; ++i) out += ping;
  // The server closes the connection: writes fail or reads see EOF.
  bool closed = false;
  for (int round = 0; round < 200 && !closed; ++round) {
    if (send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) closed = true;
    char buffer[65536];
    timeval wait = {0, 50'000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
    while (!closed) {
      const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
      if (got <= 0) break;
    }
  }
  close(fd);
  EXPECT_TRUE(closed) << "the agent kept answering a ping flood";
}

}  // namespace
}  // namespace joule

namespace joule {
namespace {

// "One flipped byte in the middle of the embedded store's log makes the
// scheduler truncate the log there and start normally": it refuses to
// start, names the offset and leaves the file as it was; an explicit repair
// keeps a copy, and no job id is handed out twice.
TEST_F(SecurityTest, ACorruptStoreRefusesToStartAndRepairKeepsACopy) {
  TestCluster cluster("sec-store");
  cluster.StartScheduler();
  std::string last_id;
  for (int i = 0; i < 6; ++i) {
    CtlResult submit = cluster.Ctl({"submit", "-q", "--name", absl::StrCat("j", i), "--env",
                                    "TOKEN=s3cret", "--", "/bin/true"});
    ASSERT_EQ(submit.exit_code, 0) << submit.err;
    last_id = Trim(submit.out);
  }
  cluster.KillScheduler();
  const std::string data = cluster.dir() + "/data";
  struct stat info;
  ASSERT_EQ(stat(data.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700);
  const std::string wal = data + "/wal.0";
  ASSERT_EQ(stat(wal.c_str(), &info), 0) << wal;
  EXPECT_EQ(info.st_mode & 0777, 0600);
  std::string bytes = ReadAll(wal);
  ASSERT_GT(bytes.size(), 100u);
  bytes[bytes.size() / 2] ^= 0x20;
  std::ofstream(wal, std::ios::trunc | std::ios::binary) << bytes;

  // Refused, loudly, with nothing changed.
  CtlResult refused = cluster.Run(
      "scheduler/joule-scheduler",
      {"--listen=127.0.0.1:0", "--insecure", absl::StrCat("--data-dir=", data)});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("wal.0"));
  EXPECT_THAT(refused.err, HasSubstr("offset"));
  EXPECT_EQ(ReadAll(wal), bytes);

  // The repair keeps the damaged file and says what it dropped.
  CtlResult repaired = cluster.Run("scheduler/joule-scheduler",
                                   {"--repair-store", absl::StrCat("--data-dir=", data)});
  ASSERT_EQ(repaired.exit_code, 0) << repaired.err;
  EXPECT_THAT(repaired.out, HasSubstr("dropped"));
  const std::string listing = cluster.dir() + "/listing";
  ASSERT_EQ(system(absl::StrCat("ls '", data, "' > '", listing, "'").c_str()), 0);
  std::string copy;
  for (absl::string_view name : absl::StrSplit(ReadAll(listing), '\n', absl::SkipEmpty())) {
    if (absl::StrContains(name, "corrupt")) copy = absl::StrCat(data, "/", name);
  }
  ASSERT_FALSE(copy.empty()) << ReadAll(listing);
  EXPECT_EQ(ReadAll(copy), bytes);

  // It starts again, and the next job's number is above every earlier one.
  cluster.StartScheduler();
  CtlResult next = cluster.Ctl({"submit", "-q", "--name", "after", "--", "/bin/true"});
  ASSERT_EQ(next.exit_code, 0) << next.err;
  int64_t last_number = 0;
  int64_t next_number = 0;
  ASSERT_TRUE(absl::SimpleAtoi(last_id.substr(4), &last_number));
  ASSERT_TRUE(absl::SimpleAtoi(Trim(next.out).substr(4), &next_number));
  EXPECT_GT(next_number, last_number);
}

}  // namespace
}  // namespace joule
