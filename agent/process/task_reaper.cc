#include "agent/process/task_reaper.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace joule {
namespace {

// A task's environ larger than this is read only this far: the agent's
// entries come first in every task's environment, before the job's.
constexpr size_t kMaxEnvironBytes = 4 << 20;
// /proc/PID/stat is one line; its comm is at most 64 bytes.
constexpr size_t kMaxStatBytes = 64 << 10;

// Every JOULE_TASK_DIR value in an environ image.
std::vector<absl::string_view> TaskMarksInEnviron(absl::string_view environ) {
  const std::string prefix = absl::StrCat(kTaskMarkEnv, "=");
  std::vector<absl::string_view> marks;
  for (absl::string_view entry : absl::StrSplit(environ, '\0')) {
    if (absl::ConsumePrefix(&entry, prefix)) marks.push_back(entry);
  }
  return marks;
}


// Whether <procfs_root>/<pid> is a process that can never show an
// environment: a kernel thread, a zombie, or one gone. (A process in the
// middle of execve shows an empty environ for a moment: its new memory map
// has no environment yet.)
bool NeverHasEnviron(const std::string& procfs_root, pid_t pid) {
  constexpr uint64_t kKernelThread = 0x00200000;  // PF_KTHREAD
  std::string stat;
  const std::string path = absl::StrCat(procfs_root, "/", pid, "/stat");
  if (ReadFileUpTo(path, kMaxStatBytes, &stat) != 0) return true;
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return true;
  // After comm: state (field 3) ... flags (field 9).
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(paren + 1), ' ', absl::SkipEmpty());
  uint64_t flags = 0;
  if (fields.size() < 7 || !absl::SimpleAtoi(fields[6], &flags)) return true;
  return fields[0] == "Z" || fields[0] == "X" || (flags & kKernelThread) != 0;
}

// Reads a process's environ; 0 or the errno. An empty one from a process
// that may be in the middle of execve is read again for up to ~10 ms, so
// that a task's process is not missed for being caught in exec.
int ReadEnviron(const std::string& procfs_root, pid_t pid, std::string* out) {
  const std::string path = absl::StrCat(procfs_root, "/", pid, "/environ");
  for (int attempt = 0;; ++attempt) {
    if (int error = ReadFileUpTo(path, kMaxEnvironBytes, out); error != 0) return error;
    if (!out->empty() || attempt >= 100 || NeverHasEnviron(procfs_root, pid)) return 0;
    const struct timespec pause = {0, 100 * 1000};
    nanosleep(&pause, nullptr);
  }
}

bool AllDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

}  // namespace

bool EnvironHasTaskMark(absl::string_view environ, absl::string_view mark) {
  for (absl::string_view found : TaskMarksInEnviron(environ)) {
    if (found == mark) return true;
  }
  return false;
}

std::string TaskMarkInEnviron(absl::string_view environ) {
  std::vector<absl::string_view> marks = TaskMarksInEnviron(environ);
  return marks.empty() ? "" : std::string(marks.front());
}

TaskReaper::TaskReaper(std::string procfs_root, Signaller signaller, pid_t self)
    : procfs_root_(std::move(procfs_root)),
      signaller_(signaller ? std::move(signaller) : Signaller(&::kill)),
      self_(self < 0 ? getpid() : self) {}

absl::StatusOr<std::map<std::string, std::vector<pid_t>>> TaskReaper::Scan(
    const std::set<std::string>& want) const {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(procfs_root_.c_str()), &closedir);
  if (dir == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrFormat("open \"%s\"", procfs_root_));
  }
  std::map<std::string, std::vector<pid_t>> found;
  std::string environ;
  for (;;) {
    errno = 0;
    struct dirent* entry = readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) {
        return absl::ErrnoToStatus(
            errno, absl::StrFormat("read directory \"%s\"", procfs_root_));
      }
      break;
    }
    if (!AllDigits(entry->d_name)) continue;
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 1 || pid == self_) continue;
    // Exited (ENOENT, ESRCH) or not ours to read (EACCES): skipped.
    if (ReadEnviron(procfs_root_, pid, &environ) != 0) continue;
    for (absl::string_view mark : TaskMarksInEnviron(environ)) {
      if (want.empty() || want.count(std::string(mark))) {
        found[std::string(mark)].push_back(pid);
        break;
      }
    }
  }
  for (auto& [mark, pids] : found) std::sort(pids.begin(), pids.end());
  return found;
}

absl::StatusOr<std::vector<pid_t>> TaskReaper::Find(const std::string& mark) const {
  if (mark.empty()) return std::vector<pid_t>();
  absl::StatusOr<std::map<std::string, std::vector<pid_t>>> found = Scan({mark});
  if (!found.ok()) return found.status();
  auto it = found->find(mark);
  return it == found->end() ? std::vector<pid_t>() : it->second;
}

absl::StatusOr<std::map<std::string, std::vector<pid_t>>> TaskReaper::FindAll() const {
  return Scan({});
}

absl::StatusOr<int> TaskReaper::Kill(const std::string& mark, int signal) const {
  if (mark.empty()) return 0;
  absl::StatusOr<std::map<std::string, int>> killed = KillAll({mark}, signal);
  if (!killed.ok()) return killed.status();
  auto it = killed->find(mark);
  return it == killed->end() ? 0 : it->second;
}

absl::StatusOr<std::map<std::string, int>> TaskReaper::KillAll(
    const std::set<std::string>& marks, int signal) const {
  std::map<std::string, int> counts;
  if (marks.empty()) return counts;
  std::set<pid_t> signalled;
  for (int round = 0; round < kMaxRounds; ++round) {
    absl::StatusOr<std::map<std::string, std::vector<pid_t>>> found = Scan(marks);
    if (!found.ok()) return found.status();
    bool any_new = false;
    for (const auto& [mark, pids] : *found) {
      for (pid_t pid : pids) {
        if (!signalled.insert(pid).second) continue;
        any_new = true;
        // ESRCH: it exited since the scan; counted all the same, it was there.
        signaller_(pid, signal);
        ++counts[mark];
      }
    }
    if (!any_new) break;
  }
  return counts;
}

}  // namespace joule
