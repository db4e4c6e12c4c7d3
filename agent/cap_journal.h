#ifndef JOULE_AGENT_CAP_JOURNAL_H_
#define JOULE_AGENT_CAP_JOURNAL_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule {

// A durable record of the hardware settings the agent has changed and what
// they were before, so that every change can be undone: when its task ends,
// when the agent stops, and, after a crash, by the next agent at start.
//
//  1. Before changing a setting the agent calls Record(key, original); the
//     journal is written (temp file, fsync, rename, fsync of the directory)
//     before Record returns, so a crash after the change always leaves the
//     original on disk. A key already recorded keeps its first original.
//  2. After putting the original back the agent calls Forget(key).
//  3. A new agent opens the journal; whatever is still in it was left
//     behind by a predecessor that crashed.
//
// Keys name the setting, e.g. "gpu/GPU-8f2c.../power_limit_w",
// "rapl/intel-rapl:0/constraint_0_power_limit_uw",
// "cpufreq/policy0/scaling_max_freq". Values are numbers.
//
// Not thread-safe; owned by the agent.
class CapJournal {
 public:
  // Loads the journal at `path` (missing file: empty). A corrupt journal is
  // DATA_LOSS naming the line.
  static absl::StatusOr<CapJournal> Open(const std::string& path);

  absl::Status Record(const std::string& key, double original);
  absl::Status Forget(const std::string& key);
  const std::map<std::string, double>& entries() const { return entries_; }

 private:
  explicit CapJournal(std::string path) : path_(std::move(path)) {}
  absl::Status Write() const;

  std::string path_;
  std::map<std::string, double> entries_;
};

}  // namespace joule

#endif  // JOULE_AGENT_CAP_JOURNAL_H_
