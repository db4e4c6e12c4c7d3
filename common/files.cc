#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace joule {

absl::Status MakeDirectories(const std::string& path) {
  std::string current;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    absl::StrAppend(&current, part, "/");
    if (part.empty()) continue;
    if (mkdir(current.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", current, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

int ReadFileUpTo(const std::string& path, size_t max_bytes, std::string* out) {
  out->clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  int error = 0;
  while (out->size() < max_bytes) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = errno;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return error;
}

}  // namespace joule
