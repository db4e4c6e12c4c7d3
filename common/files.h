#ifndef JOULE_COMMON_FILES_H_
#define JOULE_COMMON_FILES_H_

#include <string>

#include "absl/status/status.h"

namespace joule {

// mkdir -p: creates `path` and its missing parents (mode 0755). An error
// names the directory and the errno text.
absl::Status MakeDirectories(const std::string& path);

}  // namespace joule

#endif  // JOULE_COMMON_FILES_H_
