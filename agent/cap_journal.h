#ifndef JOULE_AGENT_CAP_JOURNAL_H_
#define JOULE_AGENT_CAP_JOURNAL_H_

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

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
// The file is the agent's alone (mode 0600, in the agent's 0711 work
// directory): no task can add a line to it.
//
// Keys name the setting, e.g. "gpu/GPU-8f2c.../power_limit_w",
// "rapl/intel-rapl:0/constraint_0_power_limit_uw",
// "cpufreq/policy0/scaling_max_freq". Values are numbers.
//
// Not thread-safe; owned by the agent.
class CapJournal {
 public:
  // What OpenOrReset found wrong with the journal on disk.
  struct Reset {
    // Why it could not be used: the parse error, naming the file and line.
    std::string error;
    // Where the unparseable journal was kept; empty if it could not be
    // moved (then `error` says why too).
    std::string kept_as;
  };

  // Loads the journal at `path` (missing file: empty). A corrupt journal is
  // DATA_LOSS naming the line (a key without a finite number).
  static absl::StatusOr<CapJournal> Open(const std::string& path);

  // What the agent opens at start: never fails, so that a damaged journal
  // never keeps the agent down. A journal that cannot be parsed is renamed
  // to <path>.corrupt-<UTC time of `now`> (for whoever investigates) and an
  // empty journal is written in its place; `*reset` (when not null) then
  // says so, and is nullopt otherwise. The originals it held are lost, so
  // the caller must put every device back to its default. An existing
  // journal is made mode 0600.
  static CapJournal OpenOrReset(const std::string& path, absl::Time now,
                                std::optional<Reset>* reset);

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
