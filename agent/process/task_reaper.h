#ifndef JOULE_AGENT_PROCESS_TASK_REAPER_H_
#define JOULE_AGENT_PROCESS_TASK_REAPER_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// The environment entry that marks every process of a task: the agent puts
// JOULE_TASK_DIR=<the task's own directory> in each task's environment and
// children inherit it. The directory lies under the agent's work directory,
// so the mark names one task of one agent: two agents on one machine (two
// clusters, or a test suite) whose task ids coincide never take each
// other's processes for their own.
inline constexpr char kTaskMarkEnv[] = "JOULE_TASK_DIR";

// Whether a /proc/<pid>/environ image (NUL-separated entries) holds the whole
// entry JOULE_TASK_DIR=<mark>; and the mark it holds, if any.
bool EnvironHasTaskMark(absl::string_view environ, absl::string_view mark);
std::string TaskMarkInEnviron(absl::string_view environ);

// Finds the processes of tasks when they run without a cgroup of their own,
// by the JOULE_TASK_DIR entry (the mark) of their environment, and kills
// them: what a task started with `setsid`, or as a double-forked daemon, has
// left its process group, but not its environment.
//
// A scan lists <procfs_root>/<pid>/ and reads each environ file (all of them
// readable only by root, or by the process's own user). Processes that exit
// mid-scan and ones that cannot be read are skipped; zombies have an empty
// environ and are never matched; the agent's own pid never is. A process
// caught in the middle of execve shows an empty environ for a moment: an
// empty one is read again (briefly) unless the process is a kernel thread
// or a zombie.
//
// Kill(mark):
//  1. Scans, and sends the signal to every process found that has not been
//     signalled yet.
//  2. Scans again: a process may have forked between the scan and its
//     signal. Stops when a scan finds nothing new, or after kMaxRounds.
//
// Limits: this is the fallback where no delegated cgroup exists. A task that
// clears its children's environment (or overwrites its environ memory, as
// setproctitle does) hides them from it; only a cgroup contains a hostile
// task. A pid can in principle be reused between the scan and the kill; the
// window is the time of one scan.
//
// Thread-compatible: const methods only read the filesystem.
class TaskReaper {
 public:
  // Sends a signal; returns 0 or -1 with errno, like kill(2). Injected so
  // that tests on a fixture procfs tree never signal real processes.
  using Signaller = std::function<int(pid_t pid, int signal)>;

  static constexpr int kMaxRounds = 8;

  // `self`: the pid never to signal (the agent's).
  explicit TaskReaper(std::string procfs_root = "/proc", Signaller signaller = nullptr,
                      pid_t self = -1);

  // The pids of the processes marked `mark`, ascending.
  absl::StatusOr<std::vector<pid_t>> Find(const std::string& mark) const;

  // Every process that carries some mark, by mark.
  absl::StatusOr<std::map<std::string, std::vector<pid_t>>> FindAll() const;

  // Signals every process marked `mark` as described above; returns how
  // many distinct processes were signalled.
  absl::StatusOr<int> Kill(const std::string& mark, int signal) const;

  // The same for every process carrying any of `marks`, with one scan per
  // round; returns how many processes each mark had (marks with none are
  // absent).
  absl::StatusOr<std::map<std::string, int>> KillAll(const std::set<std::string>& marks,
                                                     int signal) const;

 private:
  // Scans once; `want` empty means every mark.
  absl::StatusOr<std::map<std::string, std::vector<pid_t>>> Scan(
      const std::set<std::string>& want) const;

  const std::string procfs_root_;
  const Signaller signaller_;
  const pid_t self_;
};

}  // namespace joule

#endif  // JOULE_AGENT_PROCESS_TASK_REAPER_H_
