#include "agent/process/task_cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"

namespace joule {
namespace {

absl::Status ErrnoError(int error, const std::string& what, const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrFormat("%s \"%s\"", what, path));
}

// cgroup.procs of a cgroup with a hundred thousand processes fits.
constexpr size_t kMaxCgroupFileBytes = 1 << 20;

}  // namespace

absl::StatusOr<TaskCgroup> TaskCgroup::Create(const std::string& root,
                                              const std::string& name) {
  const std::string dir = absl::StrCat(root, "/", name);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "mkdir", dir);
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return ErrnoError(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("\"%s\" exists and is not a directory", dir));
  }
  return TaskCgroup(dir);
}

bool TaskCgroup::IsCgroup2(const std::string& path) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 &&
         static_cast<unsigned long>(fs.f_type) == CGROUP2_SUPER_MAGIC;
}

absl::Status TaskCgroup::RequireCgroup2() const {
  if (IsCgroup2(dir_)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrFormat("\"%s\" is not on a cgroup2 filesystem", dir_));
}

absl::StatusOr<std::vector<pid_t>> TaskCgroup::Pids() const {
  const std::string path = dir_ + "/cgroup.procs";
  std::string text;
  if (int error = ReadFileUpTo(path, kMaxCgroupFileBytes, &text); error != 0) {
    return ErrnoError(error, "read", path);
  }
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(line, &pid) || pid <= 0) {
      return absl::DataLossError(
          absl::StrFormat("%s: \"%s\" is not a pid", path, line.substr(0, 40)));
    }
    pids.push_back(pid);
  }
  return pids;
}

absl::StatusOr<double> TaskCgroup::CpuSeconds() const {
  const std::string path = dir_ + "/cpu.stat";
  std::string text;
  if (int error = ReadFileUpTo(path, kMaxCgroupFileBytes, &text); error != 0) {
    return ErrnoError(error, "read", path);
  }
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    uint64_t usec = 0;
    if (kv.first == "usage_usec" && absl::SimpleAtoi(kv.second, &usec)) {
      return usec / 1e6;
    }
  }
  return absl::NotFoundError(absl::StrFormat("%s has no usage_usec", path));
}

absl::Status TaskCgroup::Kill() const {
  if (absl::Status s = RequireCgroup2(); !s.ok()) return s;
  const std::string path = dir_ + "/cgroup.kill";
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return KillByPids();  // Before Linux 5.14.
  if (fd < 0) return ErrnoError(errno, "open", path);
  const ssize_t n = write(fd, "1", 1);
  const int error = errno;
  close(fd);
  if (n != 1) return ErrnoError(error, "write", path);
  return absl::OkStatus();
}

absl::Status TaskCgroup::KillByPids() const {
  if (absl::Status s = RequireCgroup2(); !s.ok()) return s;
  std::set<pid_t> signalled;
  for (int round = 0; round < kMaxRounds; ++round) {
    absl::StatusOr<std::vector<pid_t>> pids = Pids();
    if (!pids.ok()) return pids.status();
    bool any_new = false;
    for (pid_t pid : *pids) {
      if (!signalled.insert(pid).second) continue;
      any_new = true;
      kill(pid, SIGKILL);
    }
    // Killed processes leave cgroup.procs as they exit; only a pid not seen
    // before means something forked since the last read.
    if (!any_new) return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrFormat(
      "\"%s\": processes kept appearing after %d rounds of SIGKILL", dir_, kMaxRounds));
}

absl::Status TaskCgroup::Remove() const {
  if (rmdir(dir_.c_str()) == 0 || errno == ENOENT) return absl::OkStatus();
  const int error = errno;
  if (error == EBUSY) {
    return absl::FailedPreconditionError(
        absl::StrFormat("rmdir \"%s\": processes remain", dir_));
  }
  return ErrnoError(error, "rmdir", dir_);
}

}  // namespace joule
