#include "agent/cpu/proc_stat.h"

#include <array>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/cpu/sysfs.h"

namespace joule {
namespace {

// The aggregate line is short; a few hundred bytes even with every field at
// 20 digits. The per-CPU and intr lines that follow are not needed.
constexpr size_t kMaxFirstLineBytes = 1024;
constexpr size_t kMinFields = 4;

constexpr std::array<const char*, 10> kFieldNames = {
    "user", "nice",    "system", "idle",  "iowait",
    "irq",  "softirq", "steal",  "guest", "guest_nice"};

}  // namespace

absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view contents,
                                       absl::string_view source) {
  const size_t newline = contents.find('\n');
  const size_t line_length =
      newline == absl::string_view::npos ? contents.size() : newline;
  if (line_length >= kMaxFirstLineBytes) {
    return absl::DataLossError(
        absl::StrCat(source, ": first line longer than ", kMaxFirstLineBytes,
                     " bytes: ", QuoteForError(contents)));
  }
  const absl::string_view line = contents.substr(0, newline);
  const std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.empty() || fields[0] != "cpu") {
    return absl::DataLossError(
        absl::StrCat(source, ": first line is not the aggregate \"cpu\" line: ",
                     QuoteForError(line)));
  }
  if (fields.size() - 1 < kMinFields) {
    return absl::DataLossError(absl::StrCat(
        source, ": aggregate cpu line has ", fields.size() - 1,
        " fields, expected at least ", kMinFields, ": ", QuoteForError(line)));
  }
  std::array<uint64_t, kFieldNames.size()> values{};
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string field_source =
        i - 1 < kFieldNames.size() ? absl::StrCat(source, ": cpu field ", i,
                                                  " (", kFieldNames[i - 1], ")")
                                   : absl::StrCat(source, ": cpu field ", i);
    absl::StatusOr<uint64_t> value = ParseUint64(fields[i], field_source);
    if (!value.ok()) return value.status();
    if (i - 1 < values.size()) values[i - 1] = *value;
  }
  CpuTimes times;
  times.user = values[0];
  times.nice = values[1];
  times.system = values[2];
  times.idle = values[3];
  times.iowait = values[4];
  times.irq = values[5];
  times.softirq = values[6];
  times.steal = values[7];
  times.guest = values[8];
  times.guest_nice = values[9];
  // Total() must not overflow for callers; guest fields are not summed.
  uint64_t sum = 0;
  for (uint64_t part : {times.user, times.nice, times.system, times.idle,
                        times.iowait, times.irq, times.softirq, times.steal}) {
    if (part > std::numeric_limits<uint64_t>::max() - sum) {
      return absl::DataLossError(absl::StrCat(
          source,
          ": aggregate cpu times overflow 64 bits: ", QuoteForError(line)));
    }
    sum += part;
  }
  return times;
}

absl::StatusOr<CpuTimes> ReadProcStat(const std::string& procfs_root) {
  const std::string path = procfs_root + "/stat";
  absl::StatusOr<std::string> head = ReadFileHead(path, kMaxFirstLineBytes);
  if (!head.ok()) return head.status();
  if (head->empty()) {
    return absl::DataLossError(absl::StrCat(path, ": empty"));
  }
  return ParseProcStat(*head, path);
}

absl::StatusOr<CpuTimesDelta> CpuTimesBetween(const CpuTimes& prev,
                                              const CpuTimes& cur) {
  if (cur.Busy() < prev.Busy()) {
    return absl::DataLossError(
        absl::StrCat("/proc/stat busy time went backwards from ", prev.Busy(),
                     " to ", cur.Busy(), " ticks"));
  }
  CpuTimesDelta delta;
  delta.busy = cur.Busy() - prev.Busy();
  const uint64_t idle =
      cur.Idle() >= prev.Idle() ? cur.Idle() - prev.Idle() : 0;
  delta.total = delta.busy + idle;
  return delta;
}

}  // namespace joule
