#include "tests/load/proc_stats.h"

#include <dirent.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace joule {
namespace {

// The first number after `field` ("Threads:") on its line, or nullopt.
std::optional<int64_t> FieldValue(absl::string_view contents, absl::string_view field) {
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    if (!absl::ConsumePrefix(&line, field)) continue;
    // "VmRSS:\t  123456 kB": the number is the first word.
    std::vector<absl::string_view> words =
        absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
    int64_t value = 0;
    if (words.empty() || !absl::SimpleAtoi(words[0], &value)) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<ProcStats> ParseProcStatus(absl::string_view contents) {
  ProcStats stats;
  std::optional<int64_t> threads = FieldValue(contents, "Threads:");
  if (!threads.has_value()) {
    return absl::InvalidArgumentError("proc status: no valid Threads: field");
  }
  std::optional<int64_t> rss = FieldValue(contents, "VmRSS:");
  if (!rss.has_value()) {
    return absl::InvalidArgumentError("proc status: no valid VmRSS: field");
  }
  stats.threads = *threads;
  stats.rss_kib = *rss;
  return stats;
}

absl::StatusOr<ProcStats> ReadProcStats(pid_t pid, const std::string& procfs_root) {
  const std::string dir = absl::StrCat(procfs_root, "/", pid);
  std::ifstream in(dir + "/status");
  if (!in) return absl::NotFoundError(absl::StrCat("no process ", pid, " in ", procfs_root));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<ProcStats> stats = ParseProcStatus(buffer.str());
  if (!stats.ok()) return stats.status();

  DIR* fds = opendir((dir + "/fd").c_str());
  if (fds == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot list ", dir, "/fd: ", std::strerror(errno)));
  }
  while (const dirent* entry = readdir(fds)) {
    if (entry->d_name[0] != '.') ++stats->fds;
  }
  closedir(fds);
  return stats;
}

}  // namespace joule
