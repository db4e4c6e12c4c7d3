#include "agent/process/task_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace joule {
namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr char kDevNull[] = "/dev/null";
// /proc/PID/stat is one line; its comm is at most 64 bytes.
constexpr size_t kMaxStatBytes = 64 << 10;

// The step of the child's setup that failed, sent to the parent with errno.
enum class ChildStep : int32_t {
  kSetpgid = 1,
  kSignals,
  kChdir,
  kStdin,
  kStdout,
  kStderr,
  kCloseFds,
  kExec,
  kCgroup,
  kSetgroups,
  kSetgid,
  kSetuid,
  kNoNewPrivs,
};

struct ChildFailure {
  int32_t step;
  int32_t error;
};

// Everything the child needs, built before fork so that the child allocates
// nothing (after fork in a multithreaded process only async-signal-safe calls
// are allowed).
struct ChildPlan {
  std::vector<std::string> candidate_storage;
  std::vector<const char*> candidates;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const char* working_dir = nullptr;  // null: stay where we are.
  const char* stdout_path = kDevNull;
  const char* stderr_path = kDevNull;
  int error_fd = -1;
  // <cgroup_dir>/cgroup.procs, open for writing; -1: no cgroup.
  int cgroup_procs_fd = -1;
  bool set_credentials = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool no_new_privs = false;
};

std::string ErrnoText(int error) {
  char buf[256];
  // g++ defines _GNU_SOURCE, so this is the GNU strerror_r returning char*.
  return std::string(strerror_r(error, buf, sizeof(buf)));
}

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

// ---- Child side: async-signal-safe calls only. ----

[[noreturn]] void FailChild(int error_fd, ChildStep step, int error) {
  ChildFailure failure{static_cast<int32_t>(step), error};
  const char* p = reinterpret_cast<const char*>(&failure);
  size_t left = sizeof(failure);
  while (left > 0) {
    ssize_t n = write(error_fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  _exit(127);
}

// Opens `path` and puts it on fd `target`, without the close-on-exec flag.
bool OpenOnto(const char* path, int flags, int target) {
  int fd = open(path, flags | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  if (fd == target) return fcntl(fd, F_SETFD, 0) == 0;
  if (dup2(fd, target) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return false;
  }
  close(fd);
  return true;
}

// Marks every fd >= 3 close-on-exec by listing /proc/self/fd with the raw
// getdents64 system call (opendir would allocate). For kernels without
// close_range.
bool MarkFdsCloexecFromProc() {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return false;
  alignas(8) char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buf, sizeof(buf));
    if (n < 0) {
      int saved = errno;
      close(dir);
      errno = saved;
      return false;
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
      unsigned short reclen;
      memcpy(&reclen, buf + off + 16, sizeof(reclen));
      const char* name = buf + off + 19;
      int fd = 0;
      bool numeric = *name != '\0';
      for (const char* c = name; *c != '\0'; ++c) {
        if (*c < '0' || *c > '9') {
          numeric = false;
          break;
        }
        fd = fd * 10 + (*c - '0');
      }
      if (numeric && fd >= 3 && fd != dir) fcntl(fd, F_SETFD, FD_CLOEXEC);
      off += reclen;
    }
  }
  close(dir);
  return true;
}

bool MarkFdsCloexec() {
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
  if (MarkFdsCloexecFromProc()) return true;
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  rlim_t max_fd = std::min<rlim_t>(limit.rlim_cur, 1 << 20);
  for (rlim_t fd = 3; fd < max_fd; ++fd) {
    fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  }
  return true;
}

// Writes getpid() in decimal to `fd` (a cgroup.procs file).
bool WritePid(int fd) {
  char digits[24];
  char* end = digits + sizeof(digits);
  char* p = end;
  for (long pid = static_cast<long>(getpid()); pid > 0 || p == end; pid /= 10) {
    *--p = static_cast<char>('0' + pid % 10);
  }
  const ssize_t length = end - p;
  ssize_t n;
  do {
    n = write(fd, p, static_cast<size_t>(length));
  } while (n < 0 && errno == EINTR);
  if (n == length) return true;
  if (n >= 0) errno = EIO;
  return false;
}

// The errors after which execvp moves on to the next PATH entry.
bool IsSearchMiss(int error) {
  return error == ENOENT || error == ENOTDIR || error == ELOOP ||
         error == ENAMETOOLONG || error == ENODEV || error == ESTALE ||
         error == ETIMEDOUT;
}

[[noreturn]] void RunChild(const ChildPlan& plan) {
  const int efd = plan.error_fd;
  if (setpgid(0, 0) != 0) FailChild(efd, ChildStep::kSetpgid, errno);

  // Signals were blocked by the parent around fork, so no handler of the
  // agent can run here. Reset dispositions, then unblock everything.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // Fails harmlessly for signals reserved by the C library.
    sigaction(sig, &dfl, nullptr);
  }
  sigset_t empty;
  sigemptyset(&empty);
  if (sigprocmask(SIG_SETMASK, &empty, nullptr) != 0) {
    FailChild(efd, ChildStep::kSignals, errno);
  }

  // Into the task's cgroup first, while still privileged, so everything the
  // task forks is born there.
  if (plan.cgroup_procs_fd >= 0 && !WritePid(plan.cgroup_procs_fd)) {
    FailChild(efd, ChildStep::kCgroup, errno);
  }
  // Raw system calls: the libc wrappers synchronise every thread of the
  // process (setxid), which is neither needed nor async-signal-safe here.
  if (plan.set_credentials) {
    if (syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0) {
      FailChild(efd, ChildStep::kSetgroups, errno);
    }
    if (syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) {
      FailChild(efd, ChildStep::kSetgid, errno);
    }
    if (syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) {
      FailChild(efd, ChildStep::kSetuid, errno);
    }
  }
  if (plan.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    FailChild(efd, ChildStep::kNoNewPrivs, errno);
  }

  if (plan.working_dir != nullptr && chdir(plan.working_dir) != 0) {
    FailChild(efd, ChildStep::kChdir, errno);
  }
  if (!OpenOnto(kDevNull, O_RDONLY, 0)) {
    FailChild(efd, ChildStep::kStdin, errno);
  }
  constexpr int kLogFlags = O_WRONLY | O_CREAT | O_APPEND | O_NOCTTY;
  if (!OpenOnto(plan.stdout_path, kLogFlags, 1)) {
    FailChild(efd, ChildStep::kStdout, errno);
  }
  if (!OpenOnto(plan.stderr_path, kLogFlags, 2)) {
    FailChild(efd, ChildStep::kStderr, errno);
  }
  // Close-on-exec rather than close, so the error pipe stays usable until
  // execve succeeds.
  if (!MarkFdsCloexec()) FailChild(efd, ChildStep::kCloseFds, errno);

  int error = ENOENT;
  bool saw_eacces = false;
  bool hard_error = false;
  for (const char* candidate : plan.candidates) {
    execve(candidate, plan.argv.data(), plan.envp.data());
    error = errno;
    if (error == EACCES) {
      saw_eacces = true;
    } else if (!IsSearchMiss(error)) {
      hard_error = true;
      break;
    }
  }
  if (!hard_error && saw_eacces) error = EACCES;
  FailChild(efd, ChildStep::kExec, error);
}

// ---- Parent side. ----

absl::StatusCode CodeForSpawnErrno(int error) {
  switch (error) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
      return absl::StatusCode::kNotFound;
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kPermissionDenied;
    case ENOMEM:
    case EAGAIN:
    case EMFILE:
    case ENFILE:
    case E2BIG:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

absl::Status ChildFailureToStatus(const ChildFailure& failure,
                                  const SpawnOptions& options) {
  const std::string reason = ErrnoText(failure.error);
  std::string what;
  absl::StatusCode code = CodeForSpawnErrno(failure.error);
  switch (static_cast<ChildStep>(failure.step)) {
    case ChildStep::kSetpgid:
      what = "setpgid";
      code = absl::StatusCode::kInternal;
      break;
    case ChildStep::kSignals:
      what = "reset signal mask";
      code = absl::StatusCode::kInternal;
      break;
    case ChildStep::kChdir:
      what = absl::StrFormat("chdir \"%s\"", options.working_dir);
      break;
    case ChildStep::kStdin:
      what = absl::StrFormat("open stdin \"%s\"", kDevNull);
      break;
    case ChildStep::kStdout:
      what = absl::StrFormat("open stdout \"%s\"", options.stdout_path.empty()
                                                       ? kDevNull
                                                       : options.stdout_path);
      break;
    case ChildStep::kStderr:
      what = absl::StrFormat("open stderr \"%s\"", options.stderr_path.empty()
                                                       ? kDevNull
                                                       : options.stderr_path);
      break;
    case ChildStep::kCloseFds:
      what = "close inherited fds";
      code = absl::StatusCode::kInternal;
      break;
    case ChildStep::kExec:
      what = absl::StrFormat("exec \"%s\"", options.path);
      break;
    case ChildStep::kCgroup:
      what = absl::StrFormat("join cgroup \"%s\"", options.cgroup_dir);
      break;
    case ChildStep::kSetgroups:
      what = "setgroups";
      break;
    case ChildStep::kSetgid:
      what = absl::StrFormat("setgid %d", options.credentials->gid);
      break;
    case ChildStep::kSetuid:
      what = absl::StrFormat("setuid %d", options.credentials->uid);
      break;
    case ChildStep::kNoNewPrivs:
      what = "set no_new_privs";
      code = absl::StatusCode::kInternal;
      break;
    default:
      return absl::InternalError(
          absl::StrFormat("spawn \"%s\": child reported unknown step %d",
                          options.path, failure.step));
  }
  return absl::Status(code, absl::StrCat(what, ": ", reason));
}

absl::Status BuildPlan(const SpawnOptions& options, ChildPlan* plan) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("spawn: empty executable path");
  }
  if (HasNul(options.path) || HasNul(options.working_dir) ||
      HasNul(options.stdout_path) || HasNul(options.stderr_path) ||
      HasNul(options.cgroup_dir)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spawn \"%s\": path contains a NUL byte", options.path));
  }
  for (const std::string& arg : options.args) {
    if (HasNul(arg)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "spawn \"%s\": argument contains a NUL byte", options.path));
    }
  }

  const std::string* path_var = nullptr;
  plan->env_storage.reserve(options.env.size());
  for (const auto& [key, value] : options.env) {
    if (key.empty() || key.find('=') != std::string::npos || HasNul(key) ||
        HasNul(value)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "spawn \"%s\": invalid environment variable name \"%s\"",
          options.path, absl::CHexEscape(key)));
    }
    if (key == "PATH" && path_var == nullptr) path_var = &value;
    plan->env_storage.push_back(absl::StrCat(key, "=", value));
  }

  if (options.path.find('/') != std::string::npos) {
    plan->candidate_storage.push_back(options.path);
  } else {
    const std::string search = path_var != nullptr ? *path_var : kDefaultPath;
    for (absl::string_view dir : absl::StrSplit(search, ':')) {
      if (dir.empty()) dir = ".";
      plan->candidate_storage.push_back(absl::StrCat(dir, "/", options.path));
    }
  }
  for (const std::string& c : plan->candidate_storage) {
    plan->candidates.push_back(c.c_str());
  }

  // execve takes char* const[]; the strings are not modified.
  plan->argv.push_back(const_cast<char*>(options.path.c_str()));
  for (const std::string& arg : options.args) {
    plan->argv.push_back(const_cast<char*>(arg.c_str()));
  }
  plan->argv.push_back(nullptr);
  for (const std::string& entry : plan->env_storage) {
    plan->envp.push_back(const_cast<char*>(entry.c_str()));
  }
  plan->envp.push_back(nullptr);

  if (!options.working_dir.empty()) {
    plan->working_dir = options.working_dir.c_str();
  }
  if (!options.stdout_path.empty()) {
    plan->stdout_path = options.stdout_path.c_str();
  }
  if (!options.stderr_path.empty()) {
    plan->stderr_path = options.stderr_path.c_str();
  }
  if (options.credentials.has_value()) {
    plan->set_credentials = true;
    plan->uid = options.credentials->uid;
    plan->gid = options.credentials->gid;
    plan->groups = options.credentials->groups;
  }
  plan->no_new_privs = options.no_new_privs;
  return absl::OkStatus();
}

// Moves `fd` to a number >= 3 (keeping close-on-exec) so that the child's
// dup2 onto 0..2 cannot clobber it.
absl::StatusOr<int> AboveStdio(int fd) {
  if (fd >= 3) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int saved = errno;
  close(fd);
  if (moved < 0) return absl::ErrnoToStatus(saved, "spawn: dup error pipe");
  return moved;
}

// Closes its fd when it goes out of scope.
struct ScopedFd {
  ScopedFd() = default;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd >= 0) close(fd);
  }
  int fd = -1;
};

pid_t WaitBlocking(pid_t pid, int* wait_status) {
  pid_t r;
  do {
    r = waitpid(pid, wait_status, 0);
  } while (r < 0 && errno == EINTR);
  return r;
}


bool AllDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

template <typename Int>
absl::Status ParseStatField(const std::vector<absl::string_view>& fields,
                            int field_number, const char* name, Int* out) {
  // Field numbers follow proc(5): 1 pid, 2 comm, 3 state, ... `fields` holds
  // the fields after comm, so field n is fields[n - 3].
  absl::string_view text = fields[field_number - 3];
  if (!absl::SimpleAtoi(text, out)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("proc stat: field %d (%s) \"%s\" is not a number",
                        field_number, name, absl::CHexEscape(text)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents) {
  const size_t open_paren = contents.find('(');
  if (open_paren == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "proc stat: no '(' opening the comm field");
  }
  const size_t close_paren = contents.rfind(')');
  if (close_paren == absl::string_view::npos || close_paren < open_paren) {
    return absl::InvalidArgumentError(
        "proc stat: no ')' closing the comm field");
  }

  ProcStat stat;
  absl::string_view pid_text =
      absl::StripAsciiWhitespace(contents.substr(0, open_paren));
  if (!absl::SimpleAtoi(pid_text, &stat.pid)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "proc stat: pid \"%s\" is not a number", absl::CHexEscape(pid_text)));
  }
  stat.comm = std::string(
      contents.substr(open_paren + 1, close_paren - open_paren - 1));

  std::vector<absl::string_view> fields =
      absl::StrSplit(contents.substr(close_paren + 1), absl::ByAnyChar(" \t\n"),
                     absl::SkipEmpty());
  constexpr int kLastField = 17;  // cstime.
  if (static_cast<int>(fields.size()) < kLastField - 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("proc stat: %d fields after comm, need at least %d",
                        fields.size(), kLastField - 2));
  }
  if (fields[0].size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("proc stat: field 3 (state) \"%s\" is not one letter",
                        absl::CHexEscape(fields[0])));
  }
  stat.state = fields[0][0];
  absl::Status s;
  if (!(s = ParseStatField(fields, 4, "ppid", &stat.ppid)).ok()) return s;
  if (!(s = ParseStatField(fields, 5, "pgrp", &stat.pgrp)).ok()) return s;
  if (!(s = ParseStatField(fields, 14, "utime", &stat.utime_ticks)).ok()) {
    return s;
  }
  if (!(s = ParseStatField(fields, 15, "stime", &stat.stime_ticks)).ok()) {
    return s;
  }
  if (!(s = ParseStatField(fields, 16, "cutime", &stat.cutime_ticks)).ok()) {
    return s;
  }
  if (!(s = ParseStatField(fields, 17, "cstime", &stat.cstime_ticks)).ok()) {
    return s;
  }
  return stat;
}

absl::StatusOr<std::string> ReadFileTail(const std::string& path,
                                         int64_t max_bytes, bool* truncated) {
  if (truncated != nullptr) *truncated = false;
  if (max_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "read tail of \"%s\": negative max_bytes %d", path, max_bytes));
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0 && errno == ELOOP) {
    return absl::FailedPreconditionError(
        absl::StrFormat("\"%s\" is a symbolic link, not a file", path));
  }
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrFormat("open \"%s\"", path));
  }
  bool cut = false;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrFormat("\"%s\" is not a regular file", path));
  }
  if (st.st_size > max_bytes) {
    if (lseek(fd, st.st_size - max_bytes, SEEK_SET) >= 0) cut = true;
  }
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      close(fd);
      return absl::ErrnoToStatus(saved, absl::StrFormat("read \"%s\"", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    // The file may grow while we read, and non-regular files cannot seek.
    if (static_cast<int64_t>(out.size()) > max_bytes) {
      out.erase(0, out.size() - static_cast<size_t>(max_bytes));
      cut = true;
    }
  }
  close(fd);
  if (truncated != nullptr) *truncated = cut;
  return out;
}

absl::StatusOr<std::unique_ptr<TaskProcess>> TaskProcess::Spawn(
    const SpawnOptions& options) {
  ChildPlan plan;
  if (absl::Status s = BuildPlan(options, &plan); !s.ok()) return s;

  // Closed when Spawn returns; the child gets its own copy across fork.
  ScopedFd cgroup_fd;
  if (!options.cgroup_dir.empty()) {
    const std::string procs = options.cgroup_dir + "/cgroup.procs";
    const int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      return absl::Status(CodeForSpawnErrno(error),
                          absl::StrFormat("spawn: open \"%s\": %s", procs,
                                          ErrnoText(error)));
    }
    absl::StatusOr<int> above = AboveStdio(fd);
    if (!above.ok()) return above.status();
    cgroup_fd.fd = *above;
    plan.cgroup_procs_fd = *above;
  }

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "spawn: create error pipe");
  }
  const int read_fd = pipe_fds[0];
  absl::StatusOr<int> write_fd = AboveStdio(pipe_fds[1]);
  if (!write_fd.ok()) {
    close(read_fd);
    return write_fd.status();
  }
  plan.error_fd = *write_fd;

  // Block every signal across fork so that none of the agent's handlers runs
  // in the child before it resets them.
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = fork();
  if (pid == 0) RunChild(plan);
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(*write_fd);
  if (pid < 0) {
    close(read_fd);
    return absl::Status(CodeForSpawnErrno(fork_errno),
                        absl::StrCat("fork: ", ErrnoText(fork_errno)));
  }
  // Also set the group here, so it exists when Spawn returns even if the
  // child has not run yet. Fails harmlessly (EACCES) once the child has
  // exec'd, by which time the child has set it itself.
  setpgid(pid, pid);

  // EOF without data means execve succeeded and closed the write end.
  ChildFailure failure{};
  size_t got = 0;
  int read_errno = 0;
  while (got < sizeof(failure)) {
    ssize_t n = read(read_fd, reinterpret_cast<char*>(&failure) + got,
                     sizeof(failure) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) read_errno = errno;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(read_fd);
  if (got == 0 && read_errno == 0) {
    return std::unique_ptr<TaskProcess>(new TaskProcess(pid));
  }

  int wait_status = 0;
  if (got != sizeof(failure)) {
    // Cannot tell what happened; make sure the child is gone.
    kill(pid, SIGKILL);
    WaitBlocking(pid, &wait_status);
    return absl::InternalError(absl::StrFormat(
        "spawn \"%s\": lost the child's setup report (%d bytes, %s)",
        options.path, got, read_errno ? ErrnoText(read_errno) : "short read"));
  }
  WaitBlocking(pid, &wait_status);
  return ChildFailureToStatus(failure, options);
}

TaskProcess::~TaskProcess() {
  if (exit_status_.has_value()) return;
  // Reap only if it has already exited; never wait or signal.
  int wait_status;
  pid_t r;
  do {
    r = waitpid(pid_, &wait_status, WNOHANG);
  } while (r < 0 && errno == EINTR);
}

std::optional<ExitStatus> TaskProcess::Poll() {
  if (exit_status_.has_value()) return exit_status_;
  int wait_status = 0;
  struct rusage usage = {};
  pid_t r;
  do {
    r = wait4(pid_, &wait_status, WNOHANG, &usage);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) {
    // Only this object reaps pid_; ECHILD means someone else reaped it
    // (waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN). The exit status is
    // lost and the task table can no longer be trusted.
    std::fprintf(stderr, "TaskProcess::Poll: waitpid(%d): %s\n",
                 static_cast<int>(pid_), ErrnoText(errno).c_str());
    std::abort();
  }
  if (WIFEXITED(wait_status)) {
    exit_status_ = ExitStatus{WEXITSTATUS(wait_status), 0};
  } else if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    exit_status_ = ExitStatus{128 + sig, sig};
  } else {
    return std::nullopt;  // Stopped or continued; not asked for, but harmless.
  }
  exit_status_->cpu_seconds =
      usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
      usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  return exit_status_;
}

void TaskProcess::SignalGroup(int signal) {
  // ESRCH (the group is gone) and EPERM are both fine to ignore here.
  kill(-pid_, signal);
}

void TaskProcess::Terminate(absl::Time now, absl::Duration grace) {
  stop_requested_ = true;
  const absl::Time deadline = now + grace;
  if (!kill_deadline_.has_value() || deadline < *kill_deadline_) {
    kill_deadline_ = deadline;
  }
  // While the leader is unreaped its pid (the group id) cannot be reused, so
  // signalling the group cannot hit anything else.
  if (!exit_status_.has_value()) SignalGroup(SIGTERM);
}

void TaskProcess::Tick(absl::Time now) {
  if (!kill_deadline_.has_value() || kill_sent_ || exit_status_.has_value()) {
    return;
  }
  if (now < *kill_deadline_) return;
  SignalGroup(SIGKILL);
  kill_sent_ = true;
}

void TaskProcess::KillGroup() { SignalGroup(SIGKILL); }

absl::StatusOr<double> TaskProcess::CpuSeconds(
    const std::string& procfs_root) const {
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  if (ticks_per_second <= 0) {
    return absl::InternalError("sysconf(_SC_CLK_TCK) failed");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(procfs_root.c_str()),
                                          &closedir);
  if (dir == nullptr) {
    return absl::ErrnoToStatus(errno,
                               absl::StrFormat("open \"%s\"", procfs_root));
  }
  uint64_t total_ticks = 0;
  for (;;) {
    errno = 0;
    struct dirent* entry = readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) {
        return absl::ErrnoToStatus(
            errno, absl::StrFormat("read directory \"%s\"", procfs_root));
      }
      break;
    }
    if (!AllDigits(entry->d_name)) continue;
    const std::string path =
        absl::StrCat(procfs_root, "/", entry->d_name, "/stat");
    std::string contents;
    if (int error = ReadFileUpTo(path, kMaxStatBytes, &contents); error != 0) {
      // The process exited between readdir and open/read.
      if (error == ENOENT || error == ESRCH) continue;
      return absl::ErrnoToStatus(error, absl::StrFormat("read \"%s\"", path));
    }
    if (contents.empty()) continue;  // Exited while being read.
    absl::StatusOr<ProcStat> stat = ParseProcStat(contents);
    if (!stat.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", stat.status().message()));
    }
    if (stat->pgrp != pid_) continue;
    total_ticks +=
        stat->utime_ticks + stat->stime_ticks +
        static_cast<uint64_t>(std::max<int64_t>(0, stat->cutime_ticks)) +
        static_cast<uint64_t>(std::max<int64_t>(0, stat->cstime_ticks));
  }
  return static_cast<double>(total_ticks) /
         static_cast<double>(ticks_per_second);
}

}  // namespace joule
