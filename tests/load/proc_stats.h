#ifndef JOULE_TESTS_LOAD_PROC_STATS_H_
#define JOULE_TESTS_LOAD_PROC_STATS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// What the load tools watch of a process: how many threads it runs, how much
// memory it holds and how many file descriptors it has open. A server that
// serves streams without a thread (or a socket) per stream keeps the first
// and the last flat while streams are added.
struct ProcStats {
  int64_t threads = 0;
  int64_t rss_kib = 0;
  int64_t fds = 0;
  // User + system CPU time of all its threads so far.
  double cpu_seconds = 0;
};

// Parses the contents of /proc/<pid>/status into `threads` ("Threads:") and
// `rss_kib` ("VmRSS:", in kB). INVALID_ARGUMENT, naming the field, when
// either is missing or malformed.
absl::StatusOr<ProcStats> ParseProcStatus(absl::string_view contents);

// Reads <procfs_root>/<pid>/status and <procfs_root>/<pid>/stat, and counts
// the entries of <procfs_root>/<pid>/fd. NOT_FOUND when the process does not
// exist.
absl::StatusOr<ProcStats> ReadProcStats(pid_t pid,
                                        const std::string& procfs_root = "/proc");

}  // namespace joule

#endif  // JOULE_TESTS_LOAD_PROC_STATS_H_
