#include "tests/load/proc_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/process/task_process.h"

namespace joule {
namespace {

// The first number after `field` ("Threads:") on its line, or nullopt.
std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

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
  std::optional<std::string> status = ReadFile(dir + "/status");
  std::optional<std::string> stat = ReadFile(dir + "/stat");
  if (!status.has_value() || !stat.has_value()) {
    return absl::NotFoundError(absl::StrCat("no process ", pid, " in ", procfs_root));
  }
  absl::StatusOr<ProcStats> stats = ParseProcStatus(*status);
  if (!stats.ok()) return stats.status();
  absl::StatusOr<ProcStat> times = ParseProcStat(*stat);
  if (!times.ok()) return times.status();
  stats->cpu_seconds =
      static_cast<double>(times->utime_ticks + times->stime_ticks) / sysconf(_SC_CLK_TCK);

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
