#include "common/files.h"

#include <sys/stat.h>

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

}  // namespace joule
