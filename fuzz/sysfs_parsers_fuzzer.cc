// Fuzz target: the in-memory parsers behind the agent's sysfs and procfs
// readers (agent/cpu/sysfs.h, proc_stat.h, cpufreq.h, rapl.h and
// agent/process/task_process.h), whose input is whatever the kernel, a
// driver bug or a fixture put in those files.
//
// Input: [u8 selector][text]. Every parser reads the text; the selector
// only varies the counter range for RaplDeltaUj.
//
// Checked, besides never crashing, the documented contracts: refusals are
// DATA_LOSS (INVALID_ARGUMENT for /proc/<pid>/stat); a parsed /proc/stat
// line has a sum that does not overflow; the delta between two readings
// never claims more busy than total time; a RAPL delta never exceeds the
// counter's range; a parsed cpu list is non-negative.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/cpu/cpufreq.h"
#include "agent/cpu/proc_stat.h"
#include "agent/cpu/rapl.h"
#include "agent/cpu/sysfs.h"
#include "agent/process/task_process.h"
#include "fuzz/fuzz_support.h"

namespace joule::fuzz {
namespace {

void CheckRefusal(const absl::Status& status, absl::StatusCode code) {
  FUZZ_CHECK_MSG(status.code() == code,
                 "unexpected code: " + status.ToString());
}

void CheckProcStatLines(absl::string_view text) {
  // The text, and the text split in two at its middle line, as two readings.
  absl::StatusOr<CpuTimes> whole = ParseProcStat(text, "stat");
  if (!whole.ok()) {
    CheckRefusal(whole.status(), absl::StatusCode::kDataLoss);
    return;
  }
  const CpuTimes& t = *whole;
  // Total() must not have wrapped: the parser checks the sum.
  FUZZ_CHECK(t.Total() >= t.Busy() && t.Total() >= t.Idle());
  const size_t newline = text.find('\n');
  if (newline == absl::string_view::npos) return;
  absl::StatusOr<CpuTimes> second = ParseProcStat(text.substr(newline + 1), "stat");
  if (!second.ok()) return;
  absl::StatusOr<CpuTimesDelta> delta = CpuTimesBetween(t, *second);
  if (!delta.ok()) {
    CheckRefusal(delta.status(), absl::StatusCode::kDataLoss);
    return;
  }
  FUZZ_CHECK(delta->busy <= delta->total);
  const double utilization = delta->Utilization();
  FUZZ_CHECK(utilization >= 0 && utilization <= 1);
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule;        // NOLINT: a fuzz target's one function.
  using namespace joule::fuzz;  // NOLINT
  InputReader input(data, size);
  const uint8_t selector = input.U8();
  const absl::string_view text = input.Rest();

  absl::StatusOr<uint64_t> u = ParseUint64(text, "attr");
  if (!u.ok()) CheckRefusal(u.status(), absl::StatusCode::kDataLoss);
  absl::StatusOr<int64_t> s = ParseInt64(text, "attr");
  if (!s.ok()) CheckRefusal(s.status(), absl::StatusCode::kDataLoss);
  QuoteForError(text);
  int index = -1;
  if (ParseIndex(text, &index)) FUZZ_CHECK(index >= 0);

  absl::StatusOr<std::vector<int>> cpus = ParseCpuList(std::string(text), "affected_cpus");
  if (cpus.ok()) {
    for (int cpu : *cpus) FUZZ_CHECK(cpu >= 0);
  } else {
    CheckRefusal(cpus.status(), absl::StatusCode::kDataLoss);
  }

  CheckProcStatLines(text);

  absl::StatusOr<ProcStat> process = ParseProcStat(text);
  if (!process.ok()) CheckRefusal(process.status(), absl::StatusCode::kInvalidArgument);

  // Two counter readings, one from the selector and one from the text, in a
  // range the selector picks.
  if (u.ok()) {
    const uint64_t ranges[] = {0, 1, 262143328850, std::numeric_limits<uint64_t>::max()};
    const uint64_t range = ranges[selector % 4];
    const uint64_t prev = static_cast<uint64_t>(selector) * 1000;
    absl::StatusOr<uint64_t> delta = RaplDeltaUj(prev, *u, range, "energy_uj");
    if (delta.ok()) {
      FUZZ_CHECK(prev <= range && *u <= range);
      FUZZ_CHECK(*delta <= range);
    } else {
      CheckRefusal(delta.status(), absl::StatusCode::kDataLoss);
    }
  }
  return 0;
}
