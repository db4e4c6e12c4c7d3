#ifndef JOULE_AGENT_CPU_PROC_STAT_H_
#define JOULE_AGENT_CPU_PROC_STAT_H_

// The aggregate CPU time line of /proc/stat: the agent's single parser for it.
//
// Format (proc(5); Linux kernel docs: filesystems/proc.rst, "Miscellaneous
// kernel statistics in /proc/stat"): the first line is
//   cpu  user nice system idle iowait irq softirq steal guest guest_nice
// in USER_HZ ticks (sysconf(_SC_CLK_TCK)), summed over all CPUs. Older kernels
// have fewer fields (iowait since 2.5.41, irq/softirq 2.6.0, steal 2.6.11,
// guest 2.6.24, guest_nice 2.6.33); missing trailing fields read as 0, and
// fields a newer kernel may add after guest_nice are checked and ignored.
//
// Accounting rules:
//  - guest is already included in user, and guest_nice in nice, so neither
//    is added again.
//  - idle time is idle + iowait; busy time is the rest
//    (user + nice + system + irq + softirq + steal). steal counts as busy, as
//    it always has for EstimatedCpu: the vCPU wanted to run.
//  - iowait can decrease between reads (proc(5)), so a drop in idle time
//    between two reads counts as no idle time rather than an error; busy
//    time going backwards is an error.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// Cumulative CPU time in USER_HZ ticks (jiffies as /proc/stat reports them).
struct CpuTimes {
  uint64_t user = 0;
  uint64_t nice = 0;
  uint64_t system = 0;
  uint64_t idle = 0;
  uint64_t iowait = 0;
  uint64_t irq = 0;
  uint64_t softirq = 0;
  uint64_t steal = 0;
  uint64_t guest = 0;
  uint64_t guest_nice = 0;

  // Safe from overflow for values from ParseProcStat, which checks the sum.
  uint64_t Busy() const { return user + nice + system + irq + softirq + steal; }
  uint64_t Idle() const { return idle + iowait; }
  uint64_t Total() const { return Busy() + Idle(); }
};

// The change between two readings.
struct CpuTimesDelta {
  uint64_t busy = 0;
  uint64_t total = 0;
  // busy / total in [0, 1]; 0 when no time passed.
  double Utilization() const {
    return total == 0 ? 0.0 : static_cast<double>(busy) / total;
  }
};

// Parses the first line of /proc/stat contents. `source` names the file in
// errors. DATA_LOSS when the first line is not the aggregate "cpu" line, has
// fewer than 4 fields, or has a field that is not an unsigned decimal number
// that fits in 64 bits, or when the fields' sum overflows.
absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view contents,
                                       absl::string_view source);

// Reads and parses `<procfs_root>/stat`; file errors as in agent/cpu/sysfs.h.
absl::StatusOr<CpuTimes> ReadProcStat(const std::string& procfs_root);

// The busy and total ticks from `prev` to `cur` under the rules above;
// DATA_LOSS when busy time went backwards (a counter reset, or readings
// passed in the wrong order).
absl::StatusOr<CpuTimesDelta> CpuTimesBetween(const CpuTimes& prev,
                                              const CpuTimes& cur);

}  // namespace joule

#endif  // JOULE_AGENT_CPU_PROC_STAT_H_
