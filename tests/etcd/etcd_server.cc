#include "tests/etcd/etcd_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/files.h"

namespace joule::etcd {
namespace {

constexpr absl::Duration kReadyTimeout = absl::Seconds(20);
constexpr absl::Duration kStopTimeout = absl::Seconds(10);
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

absl::Status ErrnoError(int error, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(error),
                      absl::StrCat(what, ": ", std::strerror(error)));
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

void WaitForExit(pid_t pid) {
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Forks and execs `path` with `argv`. The child runs in a process group of
// its own, with stdin from /dev/null and stdout/stderr on `output_fd`, every
// signal at its default, and dies (SIGKILL) when the thread that started it
// does. An exec failure comes back through a close-on-exec pipe.
absl::StatusOr<pid_t> Spawn(const std::string& path,
                            const std::vector<std::string>& argv, int output_fd) {
  // Everything the child touches is built before the fork: after it, only
  // async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const char* const file = path.c_str();

  const int dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) return ErrnoError(errno, "open /dev/null");
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    close(dev_null);
    return ErrnoError(error, "pipe2");
  }
  const pid_t parent = getpid();
  // No signal handler of this process may run in the child between fork
  // and exec.
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  const pid_t pid = fork();
  if (pid == 0) {
    int step = 0;
    auto fail = [&](int failed_step) {
      const int report[2] = {failed_step, errno};
      ssize_t written = write(error_pipe[1], report, sizeof(report));
      (void)written;
      _exit(127);
    };
    if (setpgid(0, 0) != 0) fail(step);
    ++step;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(step);
    if (getppid() != parent) _exit(127);  // the parent is already gone
    struct sigaction default_action;
    std::memset(&default_action, 0, sizeof(default_action));
    default_action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &default_action, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ++step;
    if (dup2(dev_null, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0) {
      fail(step);
    }
    // Whatever else this process had open stays out of the child (a failure,
    // on an old kernel, leaves only fds that lack O_CLOEXEC).
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ++step;
    execv(file, args.data());
    fail(step);
  }
  const int fork_error = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  close(error_pipe[1]);
  close(dev_null);
  if (pid < 0) {
    close(error_pipe[0]);
    return ErrnoError(fork_error, "fork");
  }
  // Also here, so the group exists when Spawn returns (EACCES once the child
  // has exec'd is fine: it did it itself).
  setpgid(pid, pid);
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(error_pipe[0], report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(report))) {
    WaitForExit(pid);
    static constexpr const char* kSteps[] = {"setpgid", "prctl", "dup2", "exec"};
    return ErrnoError(report[1],
                      absl::StrCat("starting \"", path, "\": ", kSteps[report[0]]));
  }
  return pid;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace

absl::StatusOr<int> PickUnusedLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket");
  sockaddr_in address;
  std::memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    close(fd);
    return ErrnoError(error, "bind 127.0.0.1:0");
  }
  close(fd);
  return static_cast<int>(ntohs(address.sin_port));
}

absl::StatusOr<std::string> FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string directories =
      path != nullptr && *path != '\0' ? path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view directory : absl::StrSplit(directories, ':')) {
    if (directory.empty()) continue;
    std::string candidate = absl::StrCat(directory, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(name, " not found on PATH"));
}

absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv,
                                       absl::Duration timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("RunProgram: empty argv");
  std::string path = argv[0];
  if (!absl::StrContains(path, '/')) {
    absl::StatusOr<std::string> found = FindOnPath(path);
    if (!found.ok()) return found.status();
    path = *std::move(found);
  }
  int output[2];
  if (pipe2(output, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  absl::StatusOr<pid_t> pid = Spawn(path, argv, output[1]);
  close(output[1]);
  if (!pid.ok()) {
    close(output[0]);
    return pid.status();
  }
  const std::string command = absl::StrJoin(argv, " ");
  const Clock* clock = RealClock::Get();
  const absl::Time deadline = clock->Now() + timeout;
  std::string text;
  bool timed_out = false;
  for (;;) {
    const absl::Duration left = deadline - clock->Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd poll_fd = {output[0], POLLIN, 0};
    const int ready =
        poll(&poll_fd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(output[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the program (and its children) closed it
    text.append(buffer, n);
  }
  close(output[0]);
  if (timed_out) {
    kill(-*pid, SIGKILL);
    WaitForExit(*pid);
    return absl::DeadlineExceededError(absl::StrCat(
        "\"", command, "\" did not finish within ", absl::FormatDuration(timeout),
        "; output:\n", text));
  }
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("\"", command, "\" failed (",
                                            DescribeWaitStatus(status),
                                            "); output:\n", text));
  }
  return text;
}

EtcdServer::EtcdServer(std::string data_dir, EtcdServerOptions options)
    : data_dir_(std::move(data_dir)), options_(std::move(options)) {}

EtcdServer::~EtcdServer() {
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    WaitForExit(pid_);
  }
}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(
    std::string data_dir, EtcdServerOptions options) {
  if (data_dir.empty()) return absl::InvalidArgumentError("EtcdServer: empty data_dir");
  while (data_dir.size() > 1 && data_dir.back() == '/') data_dir.pop_back();
  if (options.tls && (options.cert_file.empty() || options.key_file.empty())) {
    return absl::InvalidArgumentError("EtcdServer: TLS needs cert_file and key_file");
  }
  absl::StatusOr<std::string> etcd_path = FindOnPath("etcd");
  if (!etcd_path.ok()) {
    return absl::FailedPreconditionError(
        "etcd not found on PATH; run scripts/setup.sh (Debian package etcd-server)");
  }
  std::unique_ptr<EtcdServer> server(
      new EtcdServer(std::move(data_dir), std::move(options)));
  server->etcd_path_ = *std::move(etcd_path);
  const std::string log_dir = server->data_dir_ + ".logs";
  if (absl::Status status = MakeDirectories(log_dir); !status.ok()) return status;
  server->log_path_ = log_dir + "/etcd.log";

  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<int> client_port = PickUnusedLoopbackPort();
    if (!client_port.ok()) return client_port.status();
    absl::StatusOr<int> peer_port = PickUnusedLoopbackPort();
    if (!peer_port.ok()) return peer_port.status();
    if (*peer_port == *client_port) continue;
    server->client_port_ = *client_port;
    server->peer_port_ = *peer_port;
    server->endpoint_ = absl::StrCat("127.0.0.1:", *client_port);
    last = server->Launch();
    if (last.ok()) last = server->WaitReady(kReadyTimeout);
    if (last.ok()) return server;
    if (server->pid_ > 0) server->Kill(SIGKILL).IgnoreError();
    // Only a port taken between picking and binding is worth another try.
    if (!absl::StrContains(server->LogTail(50), "address already in use")) break;
  }
  return last;
}

std::string EtcdServer::url() const {
  return absl::StrCat(options_.tls ? "https://" : "http://", endpoint_);
}

EtcdOptions EtcdServer::ClientOptions() const {
  EtcdOptions options;
  options.endpoints = {endpoint_};
  options.tls = options_.tls;
  if (options_.tls) options.ca_file = options_.ca_file;
  return options;
}

absl::Status EtcdServer::Launch() {
  const std::string client_url = url();
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::vector<std::string> argv = {
      etcd_path_,
      "--name", "joule-test",
      "--data-dir", data_dir_,
      "--listen-client-urls", client_url,
      "--advertise-client-urls", client_url,
      "--listen-peer-urls", peer_url,
      "--initial-advertise-peer-urls", peer_url,
      "--initial-cluster", absl::StrCat("joule-test=", peer_url),
      "--initial-cluster-state", "new",
      // Above the Store's 64 MiB Commit limit.
      "--max-request-bytes", "80000000",
      "--max-txn-ops", "100000",
      "--quota-backend-bytes", "8589934592",
      // One member: short raft timers only make it elect itself sooner (and
      // lower etcd's minimum lease TTL to 1 s).
      "--heartbeat-interval", "25",
      "--election-timeout", "250",
      "--logger", "zap",
      "--log-outputs", "stderr",
  };
  if (options_.tls) {
    argv.insert(argv.end(), {"--cert-file", options_.cert_file, "--key-file",
                             options_.key_file});
  }
  const int log_fd =
      open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoError(errno, absl::StrCat("open ", log_path_));
  const std::string banner =
      absl::StrCat("=== joule test harness: ", absl::StrJoin(argv, " "), "\n");
  ssize_t written = write(log_fd, banner.data(), banner.size());
  (void)written;
  absl::StatusOr<pid_t> pid = Spawn(etcd_path_, argv, log_fd);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  return absl::OkStatus();
}

absl::Status EtcdServer::WaitReady(absl::Duration timeout) {
  EtcdOptions options = ClientOptions();
  options.rpc_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<EtcdClient>> client =
      EtcdClient::Connect(std::move(options));
  if (!client.ok()) return client.status();
  const Clock* clock = RealClock::Get();
  const absl::Time deadline = clock->Now() + timeout;
  etcdserverpb::RangeRequest request;
  request.set_key("/");
  request.set_count_only(true);
  for (;;) {
    int exit_status = 0;
    if (Reap(&exit_status)) {
      return absl::InternalError(absl::StrCat(
          "etcd exited (", DescribeWaitStatus(exit_status),
          ") before it answered; last lines of ", log_path_, ":\n", LogTail()));
    }
    absl::StatusOr<etcdserverpb::RangeResponse> response = (*client)->Range(request);
    // Any answer from etcd itself counts, a refusal too (auth may be on).
    if (response.ok() ||
        (response.status().code() != absl::StatusCode::kUnavailable &&
         response.status().code() != absl::StatusCode::kDeadlineExceeded)) {
      return absl::OkStatus();
    }
    if (clock->Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "etcd at ", endpoint_, " did not answer within ",
          absl::FormatDuration(timeout), " (last: ", response.status().ToString(),
          "); last lines of ", log_path_, ":\n", LogTail()));
    }
    absl::SleepFor(kPollInterval);
  }
}

bool EtcdServer::Reap(int* exit_status) {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t reaped;
  do {
    reaped = waitpid(pid_, &status, WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped != pid_) return false;
  kill(-pid_, SIGKILL);  // anything left of its group
  pid_ = 0;
  *exit_status = status;
  return true;
}

absl::Status EtcdServer::Kill(int signal) {
  if (pid_ <= 0) return absl::FailedPreconditionError("etcd is not running");
  if (kill(-pid_, signal) != 0) {
    return ErrnoError(errno, absl::StrCat("kill -", signal, " etcd (pid ", pid_, ")"));
  }
  if (signal == SIGKILL) {
    WaitForExit(pid_);
    pid_ = 0;
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(-pid_, SIGTERM);
  kill(-pid_, SIGCONT);  // a stopped etcd only sees SIGTERM once it runs
  const Clock* clock = RealClock::Get();
  const absl::Time deadline = clock->Now() + kStopTimeout;
  int exit_status = 0;
  while (clock->Now() < deadline) {
    if (Reap(&exit_status)) return absl::OkStatus();
    absl::SleepFor(kPollInterval);
  }
  return Kill(SIGKILL);
}

absl::Status EtcdServer::Restart() {
  if (absl::Status status = Stop(); !status.ok()) return status;
  if (absl::Status status = Launch(); !status.ok()) return status;
  return WaitReady(kReadyTimeout);
}

absl::StatusOr<std::string> EtcdServer::Etcdctl(
    const std::vector<std::string>& args) const {
  absl::StatusOr<std::string> etcdctl = FindOnPath("etcdctl");
  if (!etcdctl.ok()) {
    return absl::FailedPreconditionError(
        "etcdctl not found on PATH; run scripts/setup.sh (Debian package "
        "etcd-client)");
  }
  std::vector<std::string> argv = {*etcdctl, absl::StrCat("--endpoints=", url()),
                                   "--dial-timeout=5s", "--command-timeout=10s"};
  if (options_.tls && !options_.ca_file.empty()) {
    argv.push_back(absl::StrCat("--cacert=", options_.ca_file));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv);
}

std::string EtcdServer::LogTail(int lines) const {
  absl::StatusOr<std::string> contents = ReadWholeFile(log_path_);
  if (!contents.ok()) return contents.status().ToString();
  std::vector<absl::string_view> all =
      absl::StrSplit(*contents, '\n', absl::SkipEmpty());
  const size_t first = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + first, all.end(), "\n");
}

}  // namespace joule::etcd
