#ifndef JOULE_AGENT_PROCESS_TASK_CGROUP_H_
#define JOULE_AGENT_PROCESS_TASK_CGROUP_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule {

// One task's cgroup v2 directory, <root>/<name>, under a subtree delegated
// to the agent (--task-cgroup-root).
//
//  1. Create makes the directory (mode 0755, owned by the agent): the task
//     cannot write its own cgroup's files, so it can neither move itself out
//     nor make sub-cgroups to hide in.
//  2. The task's first process moves itself in before it executes anything
//     (SpawnOptions::cgroup_dir), so everything it starts, daemons and
//     `setsid` children included, is born inside.
//  3. Kill writes "1" to cgroup.kill (Linux 5.14 and later): the kernel kills
//     every process in the cgroup and below at once, forks in flight
//     included. Without cgroup.kill, KillByPids sends SIGKILL to every pid in
//     cgroup.procs and reads it again until it is empty (a process may fork
//     between the read and its signal), for at most kMaxRounds.
//  4. Remove (rmdir) fails with EBUSY until the killed processes are gone;
//     the caller retries later.
//
// Kill and KillByPids refuse (FAILED_PRECONDITION) a directory that
// is not on a cgroup2 filesystem, so pids read from an ordinary file are
// never signalled.
//
// Not thread-safe; owned by the agent's task table. Copyable: it is a path.
class TaskCgroup {
 public:
  static constexpr int kMaxRounds = 16;

  // Makes <root>/<name> (an existing one is taken over, as after a crash).
  static absl::StatusOr<TaskCgroup> Create(const std::string& root,
                                           const std::string& name);
  // A cgroup that already exists, e.g. one a previous agent left behind.
  explicit TaskCgroup(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }

  // Whether `path` lies on a cgroup2 filesystem.
  static bool IsCgroup2(const std::string& path);

  // The pids in cgroup.procs.
  absl::StatusOr<std::vector<pid_t>> Pids() const;

  // CPU seconds of everything that ran in the cgroup (cpu.stat usage_usec).
  absl::StatusOr<double> CpuSeconds() const;

  // Kills every process in the cgroup, as described above.
  absl::Status Kill() const;
  absl::Status KillByPids() const;

  // rmdir; FAILED_PRECONDITION (EBUSY) while processes remain.
  absl::Status Remove() const;

 private:
  absl::Status RequireCgroup2() const;

  std::string dir_;
};

}  // namespace joule

#endif  // JOULE_AGENT_PROCESS_TASK_CGROUP_H_
