#include "agent/process/process_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/process/task_cgroup.h"
#include "agent/process/task_process.h"
#include "agent/process/task_reaper.h"

namespace joule {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whether `dir` and every directory above it may be searched by any uid.
bool TraversableByAll(const std::string& dir) {
  std::string path = dir;
  while (!path.empty()) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0) return false;
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    path.resize(slash);
  }
  return true;
}

int RemoveEntry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;
}

std::vector<int64_t> Numbers(absl::string_view text) {
  std::vector<int64_t> out;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    int64_t n = 0;
    if (absl::SimpleAtoi(word, &n)) out.push_back(n);
  }
  return out;
}

}  // namespace

std::string MakeTraversableTempDir(const std::string& prefix) {
  const char* test_tmp = getenv("TEST_TMPDIR");
  const std::string base =
      test_tmp != nullptr && TraversableByAll(test_tmp) ? test_tmp : "/tmp";
  std::string tmpl = absl::StrCat(base, "/", prefix, "_XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "mkdtemp %s: %s\n", tmpl.c_str(), std::strerror(errno));
    std::abort();
  }
  chmod(tmpl.c_str(), 0711);
  return tmpl;
}

void RemoveTree(const std::string& path) {
  nftw(path.c_str(), &RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
}

absl::StatusOr<ProcStatus> ReadProcStatus(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/status");
  const std::string text = ReadAll(path);
  if (text.empty()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  ProcStatus status;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "Uid:")) status.uid = Numbers(line);
    if (absl::ConsumePrefix(&line, "Gid:")) status.gid = Numbers(line);
    if (absl::ConsumePrefix(&line, "Groups:")) status.groups = Numbers(line);
    if (absl::ConsumePrefix(&line, "NoNewPrivs:")) {
      std::vector<int64_t> n = Numbers(line);
      if (!n.empty()) status.no_new_privs = static_cast<int>(n[0]);
    }
  }
  return status;
}

std::vector<pid_t> LiveTaskProcesses(const std::string& mark) {
  std::vector<pid_t> live;
  absl::StatusOr<std::vector<pid_t>> found = TaskReaper("/proc").Find(mark);
  if (!found.ok()) return live;
  for (pid_t pid : *found) {
    absl::StatusOr<ProcStat> stat = ParseProcStat(ReadAll(absl::StrCat("/proc/", pid, "/stat")));
    if (stat.ok() && stat->state != 'Z' && stat->state != 'X') live.push_back(pid);
  }
  return live;
}

std::optional<std::string> MakeTestCgroup(std::string* why_not) {
  if (geteuid() != 0) {
    *why_not = "not root";
    return std::nullopt;
  }
  // The cgroup2 mount: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified
  // (hybrid), as /proc/self/mounts says.
  std::string mount;
  for (absl::string_view line : absl::StrSplit(ReadAll("/proc/self/mounts"), '\n')) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() >= 3 && fields[2] == "cgroup2") {
      mount = std::string(fields[1]);
      break;
    }
  }
  if (mount.empty()) {
    *why_not = "no cgroup2 filesystem is mounted";
    return std::nullopt;
  }
  if (!TaskCgroup::IsCgroup2(mount)) {
    *why_not = absl::StrCat(mount, " is not a cgroup2 filesystem");
    return std::nullopt;
  }
  // Our own cgroup v2 path: the "0::<path>" line.
  std::string own;
  for (absl::string_view line : absl::StrSplit(ReadAll("/proc/self/cgroup"), '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) own = std::string(line);
  }
  std::string parent = mount;
  if (!own.empty() && own != "/") {
    const std::string candidate = mount + own;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0) parent = candidate;
  }
  std::string dir = absl::StrCat(parent, "/joule-test-", getpid(), "-",
                                 absl::ToUnixNanos(absl::Now()) % 1000000000);
  if (mkdir(dir.c_str(), 0755) != 0) {
    *why_not = absl::StrCat("cannot create a cgroup in ", parent, ": ", std::strerror(errno));
    return std::nullopt;
  }
  return dir;
}

void RemoveTestCgroup(const std::string& dir) {
  DIR* handle = opendir(dir.c_str());
  std::vector<std::string> children;
  if (handle != nullptr) {
    while (struct dirent* entry = readdir(handle)) {
      const std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      struct stat st;
      const std::string path = absl::StrCat(dir, "/", name);
      if (lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) children.push_back(path);
    }
    closedir(handle);
  }
  for (const std::string& child : children) RemoveTestCgroup(child);
  TaskCgroup cgroup(dir);
  (void)cgroup.Kill();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!cgroup.Remove().ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace joule
