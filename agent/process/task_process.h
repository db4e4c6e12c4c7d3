#ifndef JOULE_AGENT_PROCESS_TASK_PROCESS_H_
#define JOULE_AGENT_PROCESS_TASK_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace joule {

// The identity a child process takes before it runs anything of the task.
struct ProcessCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
  // The supplementary groups, exactly these (none when empty).
  std::vector<gid_t> groups;
};

// How to start a task's process.
struct SpawnOptions {
  // An absolute path, a path relative to `working_dir` (it contains a '/'),
  // or a bare name looked up in the PATH found in `env` (or
  // "/usr/local/bin:/usr/bin:/bin" when `env` has no PATH). Also argv[0].
  std::string path;
  // argv[1..].
  std::vector<std::string> args;
  // The child's whole environment; nothing is inherited from the agent.
  std::vector<std::pair<std::string, std::string>> env;
  // Directory the child runs in; empty keeps the agent's.
  std::string working_dir;
  // Files that receive fd 1 and fd 2: created if missing (mode 0600), opened
  // for append. Opened after the chdir and after the child has taken
  // `credentials`, so relative paths are relative to `working_dir` and the
  // files are opened (and created, owned by) the task's user, with its
  // rights. Empty means /dev/null.
  std::string stdout_path;
  std::string stderr_path;
  // Who the child runs as; nullopt keeps the caller's identity. Changing it
  // needs root (CAP_SETUID and CAP_SETGID).
  std::optional<ProcessCredentials> credentials;
  // Sets no_new_privs (prctl PR_SET_NO_NEW_PRIVS) in the child: setuid and
  // file-capability binaries it executes gain nothing.
  bool no_new_privs = false;
  // A cgroup v2 directory the child moves itself into (its pid written to
  // <cgroup_dir>/cgroup.procs) before anything else, so that every process
  // the task starts is born there. Empty: the caller's cgroup.
  std::string cgroup_dir;
};

// How a process ended.
struct ExitStatus {
  // The exit status, or 128 + signal when killed by a signal.
  int exit_code = 0;
  // The signal that killed it; 0 when it exited normally.
  int signal = 0;
  // User + system CPU seconds of the process and the children it waited
  // for (from wait4's rusage), so even a task shorter than one sampling
  // period has its CPU time.
  double cpu_seconds = 0;

  friend bool operator==(const ExitStatus& a, const ExitStatus& b) {
    return a.exit_code == b.exit_code && a.signal == b.signal;
  }
};

// The fields of /proc/<pid>/stat that the agent needs. Times are in clock
// ticks (sysconf(_SC_CLK_TCK) per second).
struct ProcStat {
  int64_t pid = 0;
  std::string comm;
  char state = '?';
  int64_t ppid = 0;
  int64_t pgrp = 0;
  uint64_t utime_ticks = 0;
  uint64_t stime_ticks = 0;
  // Times of children this process has waited for.
  int64_t cutime_ticks = 0;
  int64_t cstime_ticks = 0;
};

// Parses the contents of a /proc/<pid>/stat file. The comm field may contain
// spaces and parentheses, so the fields after it are found from the last ')'.
// INVALID_ARGUMENT, naming the problem, on malformed text.
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents);

// Returns at most the last `max_bytes` bytes of the file at `path`, and sets
// `*truncated` (when not null) to whether anything before them was left out.
// NOT_FOUND if the file does not exist; INVALID_ARGUMENT if max_bytes < 0.
// Never follows a symbolic link in the last component and never blocks
// opening a FIFO: anything but a regular file is FAILED_PRECONDITION (a
// task's directory is the task's, and it may plant such things).
absl::StatusOr<std::string> ReadFileTail(const std::string& path,
                                         int64_t max_bytes, bool* truncated);

// One task running as a real child process, in a process group of its own so
// that the task and everything it starts can be signalled together.
//
// Spawn:
//   1. Builds argv, envp and the candidate executable paths before forking,
//      so the child only makes async-signal-safe calls.
//   2. Opens <cgroup_dir>/cgroup.procs when asked, blocks all signals,
//      forks, and in the child: setpgid(0, 0); resets every signal
//      disposition to default and unblocks all signals; writes its pid into
//      the cgroup; setgroups, setgid, setuid (raw system calls, in that
//      order, so no privilege is left when the task's code runs); sets
//      no_new_privs; chdir; stdin from /dev/null, stdout/stderr onto the log
//      files; marks every other fd close-on-exec; execve. The parent also
//      calls setpgid so the group exists before Spawn returns, whichever
//      runs first.
//   3. A failing step writes {step, errno} to a close-on-exec pipe and the
//      child exits 127; the parent reads the pipe (EOF means the exec
//      succeeded), reaps the child and returns an error such as
//      `exec "/no/such": No such file or directory`.
//
// Stopping: Terminate() sends SIGTERM to the group and sets a deadline;
// Tick() escalates to SIGKILL once the deadline has passed. The caller owns
// the clock, so the class reads no time itself.
//
// The destructor neither signals nor waits for the process: the agent decides
// when a task dies. It only reaps the process if it has already exited, so
// that a finished task leaves no zombie behind.
//
// Threading: not thread-safe; owned by the agent's task table and used from
// one thread at a time. Spawn itself may run while other threads exist.
class TaskProcess {
 public:
  static absl::StatusOr<std::unique_ptr<TaskProcess>> Spawn(
      const SpawnOptions& options);

  TaskProcess(const TaskProcess&) = delete;
  TaskProcess& operator=(const TaskProcess&) = delete;
  ~TaskProcess();

  // The process id, which is also its process group id.
  pid_t pid() const { return pid_; }

  // Non-blocking. nullopt while the process runs; once it has exited, its
  // status on this and every later call.
  std::optional<ExitStatus> Poll();

  // Sends SIGTERM to the whole process group and arms a SIGKILL for
  // `now + grace`. Calling it again sends SIGTERM again and keeps the earlier
  // deadline.
  void Terminate(absl::Time now, absl::Duration grace);

  // Sends SIGKILL to the group once the Terminate deadline has passed and the
  // process has not exited. Does nothing without a Terminate.
  void Tick(absl::Time now);

  // Sends SIGKILL to the whole group. Meant for right after the leader was
  // reaped, to make sure nothing of the task is left; a group that is already
  // gone is fine. (Once the group is empty its id may be reused, so call this
  // promptly after Poll reports the exit, not much later.)
  void KillGroup();

  // Whether Terminate has been called.
  bool stop_requested() const { return stop_requested_; }

  // Total user + system CPU seconds of every live process in this task's
  // process group, including the children they have reaped, read from
  // `<procfs_root>/<pid>/stat`. Processes that vanish during the scan are
  // skipped. Time of processes that have been reaped by a process outside the
  // group (including the leader, once Poll reaps it) is no longer counted, so
  // sample while the task runs.
  absl::StatusOr<double> CpuSeconds(
      const std::string& procfs_root = "/proc") const;

 private:
  explicit TaskProcess(pid_t pid) : pid_(pid) {}

  void SignalGroup(int signal);

  const pid_t pid_;
  std::optional<ExitStatus> exit_status_;
  bool stop_requested_ = false;
  std::optional<absl::Time> kill_deadline_;
  bool kill_sent_ = false;
};

}  // namespace joule

#endif  // JOULE_AGENT_PROCESS_TASK_PROCESS_H_
