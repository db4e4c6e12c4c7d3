#ifndef JOULE_COMMON_FILES_H_
#define JOULE_COMMON_FILES_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace joule {

// mkdir -p: creates `path` and its missing parents (mode 0755). An error
// names the directory and the errno text.
absl::Status MakeDirectories(const std::string& path);

// Reads `path` into `out`, stopping once `max_bytes` or more are read (the
// last read may go up to 4 KiB past it). For files whose size stat cannot
// tell: procfs, cgroupfs, sysfs. Returns 0, or the errno of the failing call.
int ReadFileUpTo(const std::string& path, size_t max_bytes, std::string* out);

}  // namespace joule

#endif  // JOULE_COMMON_FILES_H_
