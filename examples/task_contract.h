// Helpers for workloads that follow Joule's task contract (DESIGN.md section 3).
//
// A Joule task is a plain executable. The agent passes its settings through
// environment variables, the task appends progress events to a file, and the
// agent rewrites a hints file that the task re-reads between steps. None of
// this needs a library; this one exists so the example workloads in this
// folder (and anyone who copies them) do not each re-implement the parsing,
// the change detection and the simulated-accelerator pacing. The formats
// themselves are the contract's one definition (contract/contract.h, which
// the agent uses too). It depends on nothing but Abseil and that, so a
// workload can be built outside Joule.
//
// Threading: everything here is meant for a workload's single main thread; no
// class is thread-safe. The only exception is the SIGTERM flag, which is set
// from a signal handler and read by the main thread.

#ifndef JOULE_EXAMPLES_TASK_CONTRACT_H_
#define JOULE_EXAMPLES_TASK_CONTRACT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/range_list.h"
#include "contract/contract.h"

namespace joule::examples {

// Exit codes shared by all example workloads, so the agent and the tests can
// tell a usage error from a crash or a termination.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTerminated = 143;  // 128 + SIGTERM, as a shell reports it.

// The contract's own definitions (contract/contract.h): the environment,
// the hints, the progress lines.
using contract::EnvLookup;
using contract::Hints;
using contract::kMaxBatchSize;
using contract::ParseHints;
using contract::ProcessEnv;
using contract::ReadTaskEnv;
using contract::TaskEnv;

// Upper bound on shard indices, for the same reason: "0-999999999" must not
// make a task build a billion-entry set.
inline constexpr int kMaxShardCount = kMaxRangeListValue;

// ---------------------------------------------------------------------------
// Range lists ("0-3,8,10-11").

// ParseRangeList and FormatRangeList come from common/range_list.h.

// Keeps only shards in [0, shard_count); returns the dropped ones in
// `dropped` (if non-null) so the caller can warn about them.
std::set<int> ShardsWithin(const std::set<int>& shards, int shard_count,
                           std::set<int>* dropped);

// ---------------------------------------------------------------------------
// Progress file.

// Appends contract events to the progress file, one line per event.
//
// The file is opened with O_APPEND and every line goes out in a single
// write(2), so lines never interleave with another writer's and the agent,
// which tails the file, never sees half a line unless the disk is full. There
// is no user-space buffer, so nothing needs flushing. A writer built from an
// empty path is disabled: every call succeeds and writes nothing.
class ProgressWriter {
 public:
  // Opens (creating if needed) `path` for appending. Empty path: disabled.
  static absl::StatusOr<ProgressWriter> Open(const std::string& path);

  ProgressWriter() = default;  // Disabled.
  ProgressWriter(ProgressWriter&& other) noexcept;
  ProgressWriter& operator=(ProgressWriter&& other) noexcept;
  ProgressWriter(const ProgressWriter&) = delete;
  ProgressWriter& operator=(const ProgressWriter&) = delete;
  ~ProgressWriter();

  bool enabled() const { return fd_ >= 0; }

  // "progress samples=<n> steps=<n> [quality=<q>]"
  absl::Status Progress(int64_t samples, int64_t steps,
                        std::optional<double> quality);
  // "shard_done shard=<k>"
  absl::Status ShardDone(int shard);
  // "target_reached [quality=<q>]"
  absl::Status TargetReached(std::optional<double> quality);

  // Writes one raw line; a trailing newline is added. Exposed for tests and
  // for events a future contract version adds.
  absl::Status WriteLine(absl::string_view line);

  // Adds " total=<n>" to every later progress line (0: not known).
  void set_total(int64_t total_samples) { total_ = total_samples; }
  // Adds " batch=<b> latency_ms=<x>" (p95 step latency at batch size b).
  void set_latency(int32_t batch, double latency_ms) {
    latency_batch_ = batch;
    latency_ms_ = latency_ms;
  }

 private:
  explicit ProgressWriter(int fd) : fd_(fd) {}
  int fd_ = -1;
  int64_t total_ = 0;
  int32_t latency_batch_ = 0;
  double latency_ms_ = 0;
};

// Monotonic time for pacing and throttling. This is the one place the
// examples read a real clock; everything else takes the time as an argument
// so it can be tested without sleeping.
using MonotonicTime = std::chrono::steady_clock::time_point;
MonotonicTime MonotonicNow();
// Wall-clock time, only to compare with file modification times.
int64_t WallTimeNanos();

// Decides when a workload may write another `progress` line. The contract asks
// for at most one line per step and at most one every `min_interval`,
// whichever is rarer, so a fast loop does not flood the agent with lines.
class ProgressThrottle {
 public:
  explicit ProgressThrottle(absl::Duration min_interval)
      : min_interval_(min_interval) {}

  // True when a line may be written at `now`; records it as written.
  bool Ready(MonotonicTime now);
  // Records a line written outside the throttle (e.g. a forced epoch-end
  // report), so the next periodic one waits a full interval.
  void MarkWritten(MonotonicTime now);

 private:
  absl::Duration min_interval_;
  std::optional<MonotonicTime> last_;
};

// Wraps a writer so the workloads do not each repeat the "warn once and keep
// going" policy: progress reporting is advisory (a task that reports nothing
// still runs), so a failed write (disk full, file removed) must not kill the
// job. The first failure is printed to stderr; later ones are silent.
class ProgressReporter {
 public:
  ProgressReporter(ProgressWriter writer, absl::Duration min_interval)
      : writer_(std::move(writer)), throttle_(min_interval) {}

  // A periodic report after a step; skipped when the throttle says so or
  // when nothing changed since the last line.
  void MaybeProgress(int64_t samples, int64_t steps, MonotonicTime now);
  // A report that bypasses the throttle (epoch end with quality, final
  // totals); still skipped when it would repeat the previous line exactly.
  void Progress(int64_t samples, int64_t steps, std::optional<double> quality,
                MonotonicTime now);
  void ShardDone(int shard);
  void TargetReached(std::optional<double> quality);
  // "waiting": out of shards, and waiting for more through the hints file.
  void Waiting() { Check(writer_.WriteLine("waiting")); }
  // The total work the task expects to do, in samples; reported as `total=`
  // on progress lines from now on (lets the scheduler project energy).
  void SetTotal(int64_t total_samples) { writer_.set_total(total_samples); }
  // The p95 latency of recent steps at `batch` (inference: lets the
  // scheduler size batches under a latency SLO).
  void SetLatency(int32_t batch, double latency_ms) { writer_.set_latency(batch, latency_ms); }

 private:
  void Check(const absl::Status& status);
  // A line carrying no news (same counters, no new quality) is skipped, so
  // that a forced final report right after a periodic one does not repeat it.
  bool IsRepeat(int64_t samples, int64_t steps,
                std::optional<double> quality) const;
  void Remember(int64_t samples, int64_t steps, std::optional<double> quality);

  ProgressWriter writer_;
  ProgressThrottle throttle_;
  bool warned_ = false;
  bool wrote_any_ = false;
  int64_t last_samples_ = 0;
  int64_t last_steps_ = 0;
  std::optional<double> last_quality_;
};

// ---------------------------------------------------------------------------
// Hints file.

// Re-reads the hints file when it changed.
//
// The agent replaces the file atomically (write a temp file, rename), so a
// change shows as a new inode, mtime or size, and Poll() costs one stat(2)
// when nothing changed: cheap enough to call every step. One gap remains: a
// rewrite with the same size within the file system's timestamp granularity
// can reuse the freed inode number and look unchanged. So for a short while
// after the file's mtime (kRecentWindow) Poll() also re-reads the content and
// compares it. A missing file means no hints. Warnings about malformed lines
// go to stderr once per distinct file content.
class HintsReader {
 public:
  static constexpr absl::Duration kRecentWindow = absl::Seconds(1);

  explicit HintsReader(std::string path) : path_(std::move(path)) {}

  // Returns true when the hints changed since the last call (the first call
  // returns true iff the file exists and holds at least one usable hint).
  // current() then has the new hints.
  bool Poll();
  const Hints& current() const { return current_; }

 private:
  struct FileVersion {
    bool exists = false;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileVersion& o) const {
      return exists == o.exists && inode == o.inode && size == o.size &&
             mtime_ns == o.mtime_ns;
    }
  };

  std::string path_;
  FileVersion version_;
  std::optional<std::string> text_;  // nullopt: the file did not exist.
  Hints current_;
};

// ---------------------------------------------------------------------------
// Live settings.

// What a workload runs with right now: the start values (environment, else
// flags) with the latest hints applied on top.
//
// Rules: a hint overrides while it is in the file; when the agent removes
// batch_size or device_speed again, the start value (or full speed) comes
// back. The shard set is different: the hints' set replaces the current one,
// and removing the key keeps the last set, because a shard set is a handover
// and not a tunable. Shards at or above the job's shard count are dropped
// with a warning on stderr rather than processed as garbage.
class TaskSettings {
 public:
  // batch size: JOULE_BATCH_SIZE, else `default_batch_size`; shard count:
  // JOULE_SHARD_COUNT, else `default_shard_count`; shards: JOULE_SHARDS,
  // else all of 0..shard_count-1 (a task run by hand processes everything).
  static TaskSettings FromEnv(const TaskEnv& env, int default_batch_size,
                              int default_shard_count);

  TaskSettings(int batch_size, int shard_count, std::set<int> shards);

  void Apply(const Hints& hints);

  int batch_size() const { return batch_size_; }
  int shard_count() const { return shard_count_; }
  double device_speed() const { return device_speed_; }
  const std::set<int>& shards() const { return shards_; }
  bool stop() const { return stop_; }

 private:
  int start_batch_size_;
  int shard_count_;
  int batch_size_;
  double device_speed_ = 1.0;
  std::set<int> shards_;
  bool stop_ = false;
};

// ---------------------------------------------------------------------------
// Shard worklist.

// The shards a replica still has to process in one pass over its data, kept
// in step with the hints file's `shards=` set.
//
// Assumptions, matching how the scheduler's sharder moves work: the owned set
// in the hints is authoritative for shards not yet started (newly owned ones
// are queued, no-longer-owned ones are dropped), while the shard in progress
// is always finished (it is small, and abandoning it half done would lose the
// work) and a finished shard is never processed twice in the same pass.
// Shards are processed in ascending order, so runs are reproducible.
class ShardWorklist {
 public:
  explicit ShardWorklist(const std::set<int>& owned);

  // Replaces the owned set (from a hints update).
  void SetOwned(const std::set<int>& owned);
  // The shard to work on: the current one if any, else the lowest pending one
  // (which becomes current). nullopt when nothing is left.
  std::optional<int> Next();
  // Marks the current shard finished.
  void FinishCurrent();

  const std::set<int>& owned() const { return owned_; }
  const std::set<int>& done() const { return done_; }
  const std::set<int>& pending() const { return pending_; }
  std::optional<int> current() const { return current_; }

 private:
  std::set<int> owned_;
  std::set<int> pending_;
  std::set<int> done_;
  std::optional<int> current_;
};

// ---------------------------------------------------------------------------
// Simulated accelerator time.

// How long a step must still sleep so that it lasts as long as it would on the
// simulated accelerator: sim_step_ms * (batch_size / 64) / device_speed,
// minus the real compute time already spent, never negative. Zero when
// sim_step_ms is zero (emulation off). device_speed outside (0, 1] is clamped
// into it, so a bad value cannot make a step infinitely long.
absl::Duration EmulatedStepSleep(double sim_step_ms, int batch_size,
                                 double device_speed,
                                 absl::Duration compute_time);

// ---------------------------------------------------------------------------
// Termination.

// Installs a SIGTERM handler that only records the request; workloads check
// TerminationRequested() between steps, finish the step they are in, and exit
// with kExitTerminated. Without SA_RESTART, so a blocking read returns early.
void InstallTerminationHandler();
bool TerminationRequested();

// ---------------------------------------------------------------------------
// Command-line flags.

// A deliberately small flag parser. The workloads need "--name=value",
// "--name value" and boolean "--name", and they must exit with code 2 and a
// message naming the flag on any error; absl::ParseCommandLine exits with 1
// by itself, which the contract does not allow.
class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  // Registers a flag; `target` keeps its current value as the default.
  void AddInt(const std::string& name, int* target, const std::string& help);
  void AddInt64(const std::string& name, int64_t* target,
                const std::string& help);
  void AddDouble(const std::string& name, double* target,
                 const std::string& help);
  void AddString(const std::string& name, std::string* target,
                 const std::string& help);
  void AddBool(const std::string& name, bool* target, const std::string& help);
  // A number that may be left unset (e.g. an optional target metric).
  void AddOptionalDouble(const std::string& name, std::optional<double>* target,
                         const std::string& help);

  // Parses argv[1..]. InvalidArgument names the flag for unknown flags,
  // missing or malformed values and positional arguments. "--help" sets
  // help_requested() and stops parsing.
  absl::Status Parse(int argc, char** argv);

  bool help_requested() const { return help_requested_; }
  // True when the flag appeared on the command line.
  bool IsSet(const std::string& name) const { return set_.count(name) > 0; }
  std::string Usage() const;

 private:
  enum class Kind { kInt, kInt64, kDouble, kOptionalDouble, kString, kBool };
  struct Flag {
    Kind kind;
    void* target;
    std::string help;
    std::string default_text;
  };
  void Add(const std::string& name, Kind kind, void* target,
           const std::string& help, std::string default_text);
  absl::Status Assign(const std::string& name, const Flag& flag,
                      absl::string_view value);

  std::string program_;
  std::map<std::string, Flag> flags_;
  std::set<std::string> set_;
  bool help_requested_ = false;
};

// ---------------------------------------------------------------------------
// Start-up shared by the workloads.

// What a workload has once it may start working.
struct WorkloadStart {
  // Set when the workload must exit now with this code (--help: 0; a bad
  // flag, config or environment: 2, already explained on stderr).
  std::optional<int> exit_code;
  TaskEnv env;
  ProgressWriter writer;
};

// Range checks of the flags every workload has; messages name the flag.
absl::Status ValidateWorkloadFlags(int batch_size, int shards,
                                   int64_t samples_per_shard, double sim_step_ms);

// Parses the flags (--help prints the usage), checks the config with
// `validate_config`, reads the task environment and opens the progress file.
// Every error is printed as "<program>: <message>" on stderr.
WorkloadStart StartWorkload(const std::string& program, FlagSet& flags,
                            int argc, char** argv,
                            const std::function<absl::Status()>& validate_config);

}  // namespace joule::examples

#endif  // JOULE_EXAMPLES_TASK_CONTRACT_H_
