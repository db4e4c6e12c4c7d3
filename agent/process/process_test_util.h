#ifndef JOULE_AGENT_PROCESS_PROCESS_TEST_UTIL_H_
#define JOULE_AGENT_PROCESS_PROCESS_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace joule {

// Test helpers for running tasks as other users and in cgroups. Tests run
// as root (here and in CI); the unprivileged uids they use (60001, 60002...)
// need no passwd entry.

// A fresh directory, mode 0711, that a process of any uid can traverse
// into: under TEST_TMPDIR when every directory above it is searchable by
// others, else under /tmp (the test's own temp directory often lies below a
// home directory of mode 0700). Remove it with RemoveTree.
std::string MakeTraversableTempDir(const std::string& prefix);

// rm -rf, not following symbolic links. Errors are ignored.
void RemoveTree(const std::string& path);

// The credential lines of /proc/<pid>/status.
struct ProcStatus {
  // Real, effective, saved, filesystem.
  std::vector<int64_t> uid;
  std::vector<int64_t> gid;
  std::vector<int64_t> groups;
  int no_new_privs = -1;
};
absl::StatusOr<ProcStatus> ReadProcStatus(pid_t pid);

// Live processes (not zombies) whose environment holds JOULE_TASK_DIR=<mark>,
// from the real /proc.
std::vector<pid_t> LiveTaskProcesses(const std::string& mark);

// A cgroup v2 directory the test may create task cgroups in: a new child of
// the test's own cgroup on the cgroup2 mount. nullopt, with `*why_not` set,
// where there is no writable cgroup2 (no mount, read-only, not root); the
// test then skips. Remove it with RemoveTestCgroup.
std::optional<std::string> MakeTestCgroup(std::string* why_not);

// Kills whatever is left in `dir` and its children and removes them all.
void RemoveTestCgroup(const std::string& dir);

}  // namespace joule

#endif  // JOULE_AGENT_PROCESS_PROCESS_TEST_UTIL_H_
