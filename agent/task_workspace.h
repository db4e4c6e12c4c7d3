#ifndef JOULE_AGENT_TASK_WORKSPACE_H_
#define JOULE_AGENT_TASK_WORKSPACE_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule {

// The agent's files on disk (--work-dir), laid out so that a task reaches
// only its own and changes nothing of the agent's:
//
//   <root>/               agent-owned 0711: tasks pass through, cannot list
//                         it or create anything in it
//   <root>/caps.journal   agent-owned 0600 (CapJournal)
//   <root>/tasks/         agent-owned 0711
//   <root>/tasks/<id>/    the task's user and group, 0700: its working
//                         directory, stdout.log and stderr.log (0600,
//                         created by the task's process as its user), and
//                         JOULE_PROGRESS_FILE (the task writes it)
//   <root>/hints/         agent-owned 0711
//   <root>/hints/<id>     JOULE_HINTS_FILE: agent-owned, group the task's
//                         gid, 0640. The task reads it; it cannot write it,
//                         and cannot replace it (the directory is the
//                         agent's). Tasks of other users cannot read it,
//                         unless they share the task's primary group.
//
// Task ids are directory names: callers pass only safe ids (no '/', not
// "." or ".."). The agent (root) reads files in a task's directory only
// without following links and without blocking (see ReadFileTail).
//
// Ownership is set only when the agent runs as root; otherwise everything
// is the agent's own user's, with the same modes.
//
// Thread-compatible: holds only paths.
class TaskWorkspace {
 public:
  explicit TaskWorkspace(std::string root);

  // Creates the root, tasks/ and hints/ (and missing parents) and gives them
  // the owner and modes above. A root that exists and belongs to another
  // user (another uid could have planted it, e.g. under /tmp) is
  // FAILED_PRECONDITION.
  absl::Status Prepare() const;

  const std::string& root() const { return root_; }
  std::string TaskDir(const std::string& task_id) const;
  std::string HintsPath(const std::string& task_id) const;
  std::string JournalPath() const { return root_ + "/caps.journal"; }

  // Makes the task's directory, or takes over one an earlier run left (a
  // link or anything but a directory is FAILED_PRECONDITION), and gives it
  // to uid:gid with mode 0700. Prepares the root first.
  absl::Status MakeTaskDir(const std::string& task_id, uid_t uid, gid_t gid) const;

  // Writes the hints file atomically (a temporary file in hints/, then
  // rename), owned by the agent with group `gid`, mode 0640.
  absl::Status WriteHints(const std::string& task_id, gid_t gid,
                          const std::string& text) const;
  // Removes the hints file (the task has ended); a missing one is fine.
  void RemoveHints(const std::string& task_id) const;
  // Removes every hints file (at start: no task runs yet).
  void RemoveAllHints() const;

  // The names of the task directories (every task this work directory has
  // held); an absent tasks/ gives none.
  std::vector<std::string> TaskIds() const;

 private:
  const std::string root_;
};

}  // namespace joule

#endif  // JOULE_AGENT_TASK_WORKSPACE_H_
