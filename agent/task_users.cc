#include "agent/task_users.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

// (uid_t)-1 means "unchanged" to setresuid: never a real id.
constexpr uint64_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;

bool ParseId(absl::string_view text, uint32_t* id) {
  uint64_t value = 0;
  if (text.empty() || !absl::ascii_isdigit(text[0]) || !absl::SimpleAtoi(text, &value) ||
      value > kMaxId) {
    return false;
  }
  *id = static_cast<uint32_t>(value);
  return true;
}

}  // namespace

absl::StatusOr<TaskUserMap> ParseTaskUsers(absl::string_view text,
                                           const std::string& source) {
  TaskUserMap users;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: %s (expected \"name uid gid [gid,gid...]\")", source, number, why));
    };
    if (fields.size() < 3 || fields.size() > 4) {
      return bad(absl::StrCat(fields.size(), " fields"));
    }
    TaskIdentity identity;
    identity.user = std::string(fields[0]);
    uint32_t id = 0;
    if (!ParseId(fields[1], &id)) {
      return bad(absl::StrCat("uid \"", absl::CHexEscape(fields[1]), "\" is not a valid id"));
    }
    identity.uid = id;
    if (!ParseId(fields[2], &id)) {
      return bad(absl::StrCat("gid \"", absl::CHexEscape(fields[2]), "\" is not a valid id"));
    }
    identity.gid = id;
    if (fields.size() == 4) {
      for (absl::string_view group : absl::StrSplit(fields[3], ',')) {
        if (!ParseId(group, &id)) {
          return bad(absl::StrCat("group \"", absl::CHexEscape(group),
                                  "\" is not a valid id"));
        }
        identity.groups.push_back(id);
      }
    }
    if (users.count(identity.user)) {
      return bad(absl::StrCat("user \"", identity.user, "\" is listed twice"));
    }
    users[identity.user] = std::move(identity);
  }
  return users;
}

absl::StatusOr<TaskUserMap> LoadTaskUsersFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read task user map ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseTaskUsers(text.str(), path);
}

absl::StatusOr<TaskIdentity> LookupSystemUser(const std::string& user) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  if (size <= 0) size = 16384;
  std::vector<char> buffer(static_cast<size_t>(size));
  struct passwd pw;
  struct passwd* found = nullptr;
  int rc;
  while ((rc = getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found)) ==
             ERANGE &&
         buffer.size() < (1u << 24)) {
    buffer.resize(buffer.size() * 2);
  }
  if (rc != 0) {
    return absl::ErrnoToStatus(
        rc, absl::StrFormat("looking up user \"%s\" in the user database", user));
  }
  if (found == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("user \"%s\" is not in the system user database", user));
  }
  TaskIdentity identity;
  identity.user = user;
  identity.uid = pw.pw_uid;
  identity.gid = pw.pw_gid;
  identity.home = pw.pw_dir != nullptr ? pw.pw_dir : "";
  int count = 32;
  std::vector<gid_t> groups(count);
  while (getgrouplist(user.c_str(), pw.pw_gid, groups.data(), &count) < 0) {
    // `count` now holds the number needed.
    if (count <= static_cast<int>(groups.size()) || count > (1 << 16)) {
      return absl::InternalError(
          absl::StrFormat("getgrouplist for user \"%s\" failed", user));
    }
    groups.resize(count);
  }
  groups.resize(count);
  identity.groups = std::move(groups);
  return identity;
}

TaskUsers::TaskUsers(std::optional<TaskUserMap> map, TaskUserPolicy policy)
    : map_(std::move(map)), policy_(policy) {}

absl::StatusOr<TaskIdentity> TaskUsers::Lookup(const std::string& user) const {
  if (!map_.has_value()) return LookupSystemUser(user);
  auto it = map_->find(user);
  if (it == map_->end()) {
    return absl::NotFoundError(
        absl::StrFormat("user \"%s\" is not in the agent's task user map", user));
  }
  return it->second;
}

absl::StatusOr<TaskIdentity> TaskUsers::Resolve(const std::string& user) const {
  if (user.empty()) {
    return absl::InvalidArgumentError(
        "the task names no user to run as (the scheduler must send the job's owner)");
  }
  absl::StatusOr<TaskIdentity> identity = Lookup(user);
  if (!identity.ok()) return identity.status();
  const std::string who = absl::StrFormat("user \"%s\" (uid %d)", user, identity->uid);
  if (identity->uid == 0 && !policy_.allow_root) {
    return absl::PermissionDeniedError(absl::StrCat(
        who, ": tasks may not run as root on this node (see --allow-root-tasks)"));
  }
  if (identity->uid != 0 && static_cast<int64_t>(identity->uid) < policy_.min_uid) {
    return absl::PermissionDeniedError(
        absl::StrFormat("%s: uid below this node's minimum task uid %d (--min-task-uid)",
                        who, policy_.min_uid));
  }
  if (policy_.agent_uid != 0 && identity->uid != policy_.agent_uid) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s: the agent runs as uid %d, not root, so it can start tasks only as "
        "itself",
        who, policy_.agent_uid));
  }
  return identity;
}

}  // namespace joule
