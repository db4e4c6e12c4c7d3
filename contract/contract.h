#ifndef JOULE_CONTRACT_CONTRACT_H_
#define JOULE_CONTRACT_CONTRACT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// The task contract (README "The task contract"; DESIGN.md section 3): how a
// task and its agent talk. One definition of it, used by both sides:
//   - the agent sets the environment, rewrites the hints file and reads the
//     progress file (agent/agent.cc);
//   - workloads read the environment and the hints and write progress
//     (examples/task_contract.h in C++, python/joule in Python, which checks
//     itself against the same test vectors, contract/testdata).
// Pure functions and constants; thread-safe.

namespace joule::contract {

// ---- Environment ----
inline constexpr char kJobId[] = "JOULE_JOB_ID";
inline constexpr char kTaskId[] = "JOULE_TASK_ID";
inline constexpr char kTaskDir[] = "JOULE_TASK_DIR";
inline constexpr char kReplicaIndex[] = "JOULE_REPLICA_INDEX";
inline constexpr char kReplicaCount[] = "JOULE_REPLICA_COUNT";
inline constexpr char kBatchSize[] = "JOULE_BATCH_SIZE";
inline constexpr char kShards[] = "JOULE_SHARDS";
inline constexpr char kShardCount[] = "JOULE_SHARD_COUNT";
inline constexpr char kProgressFile[] = "JOULE_PROGRESS_FILE";
inline constexpr char kHintsFile[] = "JOULE_HINTS_FILE";
inline constexpr char kCudaVisibleDevices[] = "CUDA_VISIBLE_DEVICES";
// Rendezvous, as torch.distributed's env:// init and torchrun expect them:
// replica 0's node address and a port the job holds there, the gang's size
// and this replica's rank (one replica per node: local rank 0 of 1).
inline constexpr char kMasterAddr[] = "MASTER_ADDR";
inline constexpr char kMasterPort[] = "MASTER_PORT";
inline constexpr char kWorldSize[] = "WORLD_SIZE";
inline constexpr char kRank[] = "RANK";
inline constexpr char kLocalRank[] = "LOCAL_RANK";
inline constexpr char kLocalWorldSize[] = "LOCAL_WORLD_SIZE";

// Any batch size above this is surely a typo and would make a workload
// allocate unbounded memory.
inline constexpr int kMaxBatchSize = 1 << 20;

// What the agent told the task. Optional fields are unset when the variable
// is missing (e.g. a task started by hand). An empty JOULE_SHARDS is not a
// missing one: "you own no shards yet" (more may come through the hints).
struct TaskEnv {
  std::string job_id;
  std::string task_id;
  int replica_index = 0;
  int replica_count = 1;
  std::optional<int> batch_size;
  std::optional<std::set<int>> shards;
  std::optional<int> shard_count;
  std::string cuda_visible_devices;
  // Empty: do not report progress / no hints.
  std::string progress_file;
  std::string hints_file;
};

// Looks up one environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
std::optional<std::string> ProcessEnv(const char* name);

// Reads and checks the contract's variables. Every error is INVALID_ARGUMENT
// and starts with the variable's name ("JOULE_SHARDS: ..."): integers are
// integers, batch size and counts positive, the replica index below the
// count, every shard below the shard count.
absl::StatusOr<TaskEnv> ReadTaskEnv(const EnvLookup& lookup = ProcessEnv);

// ---- Progress file: one event per line, appended by the task ----
struct ProgressEvent {
  enum class Type { kProgress, kShardDone, kTargetReached, kWaiting };
  Type type = Type::kProgress;
  // progress: counters so far; total = the samples the task expects in all.
  std::optional<int64_t> samples;
  std::optional<int64_t> steps;
  std::optional<int64_t> total;
  // progress: the p95 latency of recent steps at batch size `batch`.
  std::optional<int32_t> batch;
  std::optional<double> latency_ms;
  // progress, target_reached: the quality metric (e.g. validation accuracy).
  std::optional<double> quality;
  // shard_done.
  std::optional<int> shard;

  bool operator==(const ProgressEvent& other) const;
};

// The line for `event`, without its newline:
//   progress samples=N steps=N [total=T] [batch=B latency_ms=L] [quality=Q]
//   shard_done shard=K
//   target_reached [quality=Q]
//   waiting
// Quality is printed with 6 significant digits ("%.6g"), latency with 3
// decimals; a progress line always carries samples and steps (0 if unset).
std::string FormatProgress(const ProgressEvent& event);
// The event a line carries; nullopt for a line that is not a contract event
// (any other output a task writes there is ignored). Lenient, as a task's
// output must never break its agent: fields are "key=value" words in any
// order; unknown keys are ignored, and a value that is not a finite number
// or is out of range (batch outside 1..kMaxBatchSize, a negative total or
// latency, a shard that is not a whole number in [0, kMaxRangeListValue))
// drops only that field.
std::optional<ProgressEvent> ParseProgressLine(absl::string_view line);

// ---- Hints file: "key=value" lines the agent rewrites atomically ----
struct Hints {
  std::optional<int> batch_size;
  std::optional<std::set<int>> shards;
  std::optional<bool> stop;
  // Simulated accelerators only: the device's speed, in (0, 1].
  std::optional<double> device_speed;

  bool operator==(const Hints& other) const;
};

// The file's text: the set keys in the order batch_size, shards, stop,
// device_speed ("%.4f"), one per line.
std::string FormatHints(const Hints& hints);
// Parses a hints file. Blank lines and '#' comments are skipped and unknown
// keys ignored (a newer agent may send keys a task does not know). A
// malformed line or an unusable value (batch_size=0, device_speed=2,
// stop=maybe) is skipped and described in `warnings` (when given), one
// entry per problem naming its line number. Never fails: a bad hint must
// not crash a running job.
Hints ParseHints(absl::string_view text, std::vector<std::string>* warnings);

}  // namespace joule::contract

#endif  // JOULE_CONTRACT_CONTRACT_H_
