#ifndef JOULE_TESTS_ETCD_ETCD_SERVER_H_
#define JOULE_TESTS_ETCD_ETCD_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/etcd/etcd_client.h"

namespace joule::etcd {

struct EtcdServerOptions {
  // Serve clients over TLS with `cert_file`/`key_file` (PEM). `ca_file` is
  // the CA that signed the certificate; the harness's own readiness check
  // and etcdctl use it to verify the server.
  bool tls = false;
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
};

// A real single-member etcd (Debian's `etcd` binary, found on PATH) for one
// test, on free loopback ports.
//
//   1. Start picks a client and a peer port (bind 127.0.0.1:0), starts
//      `etcd --data-dir DATA_DIR ...` in a process group of its own with
//      stdout and stderr appended to DATA_DIR.logs/etcd.log, and waits up to
//      20 s until a Range through EtcdClient gets an answer. If the ports
//      were taken in the meantime it tries again with new ones.
//   2. Kill/Stop/Restart signal the whole group; Restart starts etcd again on
//      the same ports and data directory.
//   3. The destructor SIGKILLs the group and reaps it. The child also gets
//      PR_SET_PDEATHSIG=SIGKILL, so etcd dies with the thread that started
//      it even when the test process crashes: start (and Restart) the server
//      from the test's main thread.
//
// Errors name what failed and include the last lines of etcd's log.
//
// Threading: not thread-safe; used from the test's main thread.
class EtcdServer {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(
      std::string data_dir, EtcdServerOptions options = {});

  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;
  ~EtcdServer();

  // "127.0.0.1:PORT", the client endpoint.
  const std::string& endpoint() const { return endpoint_; }
  // "http://127.0.0.1:PORT" or "https://...".
  std::string url() const;
  // The running etcd's pid (also its process group); 0 when stopped.
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& data_dir() const { return data_dir_; }

  // Options for an EtcdClient of this server: its endpoint, and TLS with the
  // CA when the server uses TLS.
  EtcdOptions ClientOptions() const;

  // Sends `signal` to etcd's process group (SIGKILL, SIGSTOP, SIGCONT, ...).
  // After SIGKILL the process is reaped and pid() is 0.
  absl::Status Kill(int signal);
  // SIGTERM, then waits (SIGKILL after 10 s).
  absl::Status Stop();
  // Stops etcd if it runs, starts it again on the same ports and data
  // directory and waits until it answers.
  absl::Status Restart();

  // Runs `etcdctl --endpoints=URL [--cacert=CA] ARGS...` and returns its
  // output; an error carries the exit status and the output.
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args) const;

  // The last `lines` lines of etcd's log.
  std::string LogTail(int lines = 20) const;

 private:
  EtcdServer(std::string data_dir, EtcdServerOptions options);

  absl::Status Launch();
  absl::Status WaitReady(absl::Duration timeout);
  // Reaps etcd if it has exited: true and *exit_status when it has.
  bool Reap(int* exit_status);

  const std::string data_dir_;
  const EtcdServerOptions options_;
  std::string etcd_path_;
  std::string log_path_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string endpoint_;
  pid_t pid_ = 0;
};

// A loopback TCP port that was free a moment ago (bind 127.0.0.1:0).
absl::StatusOr<int> PickUnusedLoopbackPort();

// The path of `name` in the directories of $PATH; NOT_FOUND otherwise.
absl::StatusOr<std::string> FindOnPath(const std::string& name);

// Runs argv[0] (looked up on PATH) with stdin from /dev/null, waits up to
// `timeout` (then SIGKILL), and returns stdout and stderr together. A
// non-zero exit is an error carrying the command, its status and its output.
absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv,
                                       absl::Duration timeout = absl::Seconds(30));

}  // namespace joule::etcd

#endif  // JOULE_TESTS_ETCD_ETCD_SERVER_H_
