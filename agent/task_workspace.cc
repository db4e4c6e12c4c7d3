#include "agent/task_workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"

namespace joule {
namespace {

absl::Status ErrnoError(int error, const std::string& what, const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrFormat("%s \"%s\"", what, path));
}

// Opens a directory without following a link in its last component.
absl::StatusOr<int> OpenDirectory(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  if (errno == ELOOP || errno == ENOTDIR) {
    return absl::FailedPreconditionError(
        absl::StrFormat("\"%s\" is not a directory (a link?)", path));
  }
  return ErrnoError(errno, "open", path);
}

// Gives the open directory `fd` to uid:gid (when the agent is root) and
// `mode`.
absl::Status Own(int fd, const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  if (geteuid() == 0 && fchown(fd, uid, gid) != 0) return ErrnoError(errno, "chown", path);
  if (fchmod(fd, mode) != 0) return ErrnoError(errno, "chmod", path);
  return absl::OkStatus();
}

// mkdir if missing, then the agent's own directory with mode 0711.
absl::Status AgentDirectory(const std::string& path, bool must_be_ours) {
  if (mkdir(path.c_str(), 0711) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "mkdir", path);
  }
  absl::StatusOr<int> fd = OpenDirectory(path);
  if (!fd.ok()) return fd.status();
  struct stat st;
  absl::Status status;
  if (fstat(*fd, &st) != 0) {
    status = ErrnoError(errno, "stat", path);
  } else if (must_be_ours && st.st_uid != geteuid()) {
    status = absl::FailedPreconditionError(absl::StrFormat(
        "work directory \"%s\" belongs to uid %d, not to the agent (uid %d): "
        "another user may have made it; remove it or choose another --work-dir",
        path, st.st_uid, geteuid()));
  } else {
    status = Own(*fd, path, geteuid(), getegid(), 0711);
  }
  close(*fd);
  return status;
}

}  // namespace

namespace {

std::string WithoutTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace

TaskWorkspace::TaskWorkspace(std::string root)
    : root_(WithoutTrailingSlashes(std::move(root))) {}

std::string TaskWorkspace::TaskDir(const std::string& task_id) const {
  return absl::StrCat(root_, "/tasks/", task_id);
}

std::string TaskWorkspace::HintsPath(const std::string& task_id) const {
  return absl::StrCat(root_, "/hints/", task_id);
}

absl::Status TaskWorkspace::Prepare() const {
  if (absl::Status made = MakeDirectories(root_); !made.ok()) return made;
  if (absl::Status s = AgentDirectory(root_, /*must_be_ours=*/true); !s.ok()) return s;
  if (absl::Status s = AgentDirectory(root_ + "/tasks", false); !s.ok()) return s;
  return AgentDirectory(root_ + "/hints", false);
}

absl::Status TaskWorkspace::MakeTaskDir(const std::string& task_id, uid_t uid,
                                        gid_t gid) const {
  if (absl::Status s = Prepare(); !s.ok()) return s;
  const std::string dir = TaskDir(task_id);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "mkdir", dir);
  }
  absl::StatusOr<int> fd = OpenDirectory(dir);
  if (!fd.ok()) return fd.status();
  absl::Status owned = Own(*fd, dir, uid, gid, 0700);
  close(*fd);
  return owned;
}

absl::Status TaskWorkspace::WriteHints(const std::string& task_id, gid_t gid,
                                       const std::string& text) const {
  const std::string path = HintsPath(task_id);
  // '~' is not in a task id's alphabet: no other task's hints file.
  const std::string tmp = path + "~";
  unlink(tmp.c_str());
  const int fd =
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoError(errno, "create", tmp);
  absl::Status status;
  if (geteuid() == 0 && fchown(fd, 0, gid) != 0) {
    status = ErrnoError(errno, "chown", tmp);
  } else if (fchmod(fd, 0640) != 0) {
    status = ErrnoError(errno, "chmod", tmp);
  } else {
    size_t written = 0;
    while (written < text.size() && status.ok()) {
      const ssize_t n = write(fd, text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status = ErrnoError(n < 0 ? errno : EIO, "write", tmp);
      } else {
        written += static_cast<size_t>(n);
      }
    }
  }
  close(fd);
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, "rename", tmp);
  }
  if (!status.ok()) unlink(tmp.c_str());
  return status;
}

void TaskWorkspace::RemoveHints(const std::string& task_id) const {
  unlink(HintsPath(task_id).c_str());
}

void TaskWorkspace::RemoveAllHints() const {
  const std::string dir = root_ + "/hints";
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) return;
  while (struct dirent* entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    unlink(absl::StrCat(dir, "/", name).c_str());
  }
  closedir(handle);
}

std::vector<std::string> TaskWorkspace::TaskIds() const {
  std::vector<std::string> ids;
  const std::string dir = root_ + "/tasks";
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) return ids;
  while (struct dirent* entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (lstat(absl::StrCat(dir, "/", name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      ids.push_back(name);
    }
  }
  closedir(handle);
  return ids;
}

}  // namespace joule
