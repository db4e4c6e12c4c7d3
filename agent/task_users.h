#ifndef JOULE_AGENT_TASK_USERS_H_
#define JOULE_AGENT_TASK_USERS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// Who a task runs as.
struct TaskIdentity {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  // Supplementary groups, exactly these.
  std::vector<gid_t> groups;
  // The home directory from the user database; empty from a map file.
  std::string home;
};

// User name -> identity, from a --task-users file.
using TaskUserMap = std::map<std::string, TaskIdentity>;

// Parses a task user map. One user a line:
//
//   # name  uid    gid    [supplementary gids]
//   alice   60001  60001  60100,60101
//   bob     60002  100
//
// Fields are separated by blanks; '#' starts a comment; blank lines are
// skipped. Ids are decimal, 0..4294967294. A malformed line or a name given
// twice is INVALID_ARGUMENT naming `source`:line.
absl::StatusOr<TaskUserMap> ParseTaskUsers(absl::string_view text,
                                           const std::string& source);
// Reads and parses the file; NOT_FOUND (or the errno's code) if unreadable.
absl::StatusOr<TaskUserMap> LoadTaskUsersFile(const std::string& path);

// Which identities tasks may take.
struct TaskUserPolicy {
  // Users with a smaller uid are refused; 0 disables the floor (uid 0 still
  // needs allow_root).
  int64_t min_uid = 1000;
  bool allow_root = false;
  // The agent's effective uid. An agent that is not root cannot change
  // identity, so it starts only tasks whose user maps to its own uid.
  uid_t agent_uid = 0;
};

// Maps a job's user (StartTask.user) to the uid, gid and groups its task
// runs as, and refuses the ones the policy does not allow.
//
//  1. An empty user is INVALID_ARGUMENT: the scheduler always names the
//     job's owner.
//  2. With a map (--task-users), the user must be in it; the map is the
//     whole list, the system database is not consulted. Without one, the
//     system user database: getpwnam_r for uid, gid and home, getgrouplist
//     for the groups. Unknown users are NOT_FOUND.
//  3. uid 0 is PERMISSION_DENIED unless allow_root; a uid below min_uid is
//     PERMISSION_DENIED; a non-root agent refuses any uid but its own.
// Every error names the user and the reason.
//
// Thread-safe: immutable after construction (getpwnam_r is reentrant).
class TaskUsers {
 public:
  // `map`: nullopt means the system user database.
  TaskUsers(std::optional<TaskUserMap> map, TaskUserPolicy policy);

  absl::StatusOr<TaskIdentity> Resolve(const std::string& user) const;

  // Whether the agent changes identity when it starts a task (it is root).
  bool switches_user() const { return policy_.agent_uid == 0; }

 private:
  absl::StatusOr<TaskIdentity> Lookup(const std::string& user) const;

  const std::optional<TaskUserMap> map_;
  const TaskUserPolicy policy_;
};

// Looks `user` up in the system user database (NOT_FOUND when unknown).
absl::StatusOr<TaskIdentity> LookupSystemUser(const std::string& user);

}  // namespace joule

#endif  // JOULE_AGENT_TASK_USERS_H_
