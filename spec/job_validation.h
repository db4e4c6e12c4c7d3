// Server-side defaults and validation of user-submitted job specs.
//
// A JobSpec arrives from an untrusted client (joulectl or any gRPC caller).
// The scheduler's submit path does, in this order:
//   1. ApplyJobSpecDefaults(&spec): fills every field the user left unset.
//   2. ValidateJobSpec(spec, clock.Now()): refuses anything outside the limits
//      below with INVALID_ARGUMENT, naming the field.
// Only a spec that passed both is stored and scheduled, so the rest of the
// scheduler may rely on the invariants listed with the constants.
//
// Pure functions; thread-safe.

#ifndef JOULE_SPEC_JOB_VALIDATION_H_
#define JOULE_SPEC_JOB_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"

namespace joule {

// ---- Defaults (ApplyJobSpecDefaults) ----

// An unset `type` becomes JOB_TYPE_TRAINING.
// Replicas when `replicas` is unset.
inline constexpr int32_t kDefaultReplicas = 1;
// Whole GPUs per replica when `resources.gpus` is unset.
inline constexpr int32_t kDefaultGpus = 0;
// CPU cores per replica when `resources.cpus` is unset.
inline constexpr double kDefaultCpus = 1.0;
// Host memory per replica when `resources.memory_bytes` is unset: 512 MiB.
inline constexpr int64_t kDefaultMemoryBytes = int64_t{512} << 20;
// Batch size when none of batch_size.{default_size,min,max} is set; the range
// is then fixed at [32, 32] (the scheduler never changes it).
inline constexpr int32_t kDefaultBatchSize = 32;
// Objective when no goal is set: minimum energy within a 1.10x slowdown.
inline constexpr double kDefaultMaxSlowdown = 1.10;
// restart_policy: 3 retries, waiting 10 s before the first and doubling up to
// 300 s, for lost tasks only (a failed exit does not retry unless asked).
inline constexpr int32_t kDefaultMaxRetries = 3;
inline constexpr double kDefaultBackoffS = 10;
inline constexpr double kDefaultMaxBackoffS = 300;

// ---- Limits (ValidateJobSpec) ----

// name: required, 1..253 characters of [a-z0-9-._], first and last one
// alphanumeric (a DNS subdomain, loosened to allow '_').
inline constexpr int kMaxNameLength = 253;

// command: required, at most 4 KiB, no NUL byte (it goes to execve).
inline constexpr int64_t kMaxCommandBytes = 4096;
// args: at most 1024 entries of at most 32 KiB each, no NUL byte.
inline constexpr int kMaxArgs = 1024;
inline constexpr int64_t kMaxArgBytes = int64_t{32} << 10;
// command plus all args together: at most 256 KiB (well under ARG_MAX).
inline constexpr int64_t kMaxCommandLineBytes = int64_t{256} << 10;

// env: at most 1024 entries. Names match [A-Za-z_][A-Za-z0-9_]* and are at
// most 256 bytes; values are at most 32 KiB without NUL; names plus values at
// most 256 KiB in total.
inline constexpr int kMaxEnvEntries = 1024;
inline constexpr int64_t kMaxEnvNameBytes = 256;
inline constexpr int64_t kMaxEnvValueBytes = int64_t{32} << 10;
inline constexpr int64_t kMaxEnvTotalBytes = int64_t{256} << 10;
// Names the agent sets for every task; a job may not set them.
// Any name starting with this prefix is reserved...
inline constexpr absl::string_view kReservedEnvPrefix = "JOULE_";
// ...and so is this one (the agent's GPU assignment).
inline constexpr absl::string_view kReservedEnvName = "CUDA_VISIBLE_DEVICES";

// resources.gpus: 0..64 whole GPUs per replica.
inline constexpr int32_t kMaxGpusPerReplica = 64;
// resources.cpus: finite, > 0 and <= 1024 cores per replica.
inline constexpr double kMaxCpusPerReplica = 1024.0;
// resources.memory_bytes: > 0 and <= 64 TiB per replica.
inline constexpr int64_t kMaxMemoryBytesPerReplica = int64_t{64} << 40;
// resources.gpu_model: at most 64 characters of [A-Za-z0-9 ._-]; empty: any.
inline constexpr int kMaxGpuModelLength = 64;

// replicas: 1..1024.
inline constexpr int32_t kMaxReplicas = 1024;

// batch_size.{default_size,min,max}: each 1..1,048,576, and
// min <= default_size <= max.
inline constexpr int32_t kMaxBatchSize = 1 << 20;

// shard_count: 0..1,000,000; when > 0 it must be >= replicas so that every
// replica owns at least one shard.
inline constexpr int32_t kMaxShardCount = 1000000;

// objective.max_slowdown: finite, in [1.0, 100].
inline constexpr double kMinMaxSlowdown = 1.0;
inline constexpr double kMaxMaxSlowdown = 100.0;
// objective.energy_time_weight: finite, in [0, 1].
inline constexpr double kMinEnergyTimeWeight = 0.0;
inline constexpr double kMaxEnergyTimeWeight = 1.0;
// objective.deadline: a valid timestamp strictly after the submit time.

// labels: at most 64; keys 1..63 characters of [A-Za-z0-9._/-]; values at
// most 63 bytes.
inline constexpr int kMaxLabels = 64;
inline constexpr int kMaxLabelKeyLength = 63;
inline constexpr int kMaxLabelValueLength = 63;

// user: at most 253 bytes.
inline constexpr int kMaxUserLength = 253;
// job_class: at most 253 bytes.
inline constexpr int kMaxJobClassLength = 253;
inline constexpr int kMaxPlacementProfileLength = 63;
// working_dir: empty, or an absolute path of at most 4096 bytes without NUL.
inline constexpr int64_t kMaxWorkingDirBytes = 4096;

// restart_policy.max_retries: 0..100.
inline constexpr int32_t kMaxRetries = 100;
// restart_policy.backoff_s and max_backoff_s: finite, in [0, 86400] (a day),
// and backoff_s <= max_backoff_s.
inline constexpr double kMaxBackoffS = 86400;
// restart_policy.retry_on: lost and/or failed, each at most once, not empty.

// Fills the fields the user left unset:
//   replicas                 -> kDefaultReplicas
//   resources.gpus           -> kDefaultGpus
//   resources.cpus           -> kDefaultCpus
//   resources.memory_bytes   -> kDefaultMemoryBytes
//   batch_size (0 = unset; a negative value counts as set and is left for
//   ValidateJobSpec to refuse):
//     default_size unset     -> min if set, else max if set, else
//                               kDefaultBatchSize
//     min unset              -> default_size
//     max unset              -> default_size
//     so {} -> 32/32/32, {default 64} -> 64/64/64, {min 16, max 256} ->
//     16/16/256, {default 64, max 256} -> 64/64/256.
//   job_class (empty)        -> name
//   objective (no goal)      -> stays unset: the least total energy
//   restart_policy           -> see ApplyRestartPolicyDefaults
// Fields already set are left alone; applying it twice changes nothing.
// Upper bound on energy_budget_j: 1 PJ, far above any job.
inline constexpr double kMaxEnergyBudgetJ = 1e15;
// Upper bound on expected_samples: far above any training run.
inline constexpr double kMaxExpectedSamples = 1e18;

void ApplyJobSpecDefaults(joule::v1::JobSpec* spec);

// Fills a restart policy's unset fields:
//   max_retries              -> kDefaultMaxRetries
//   backoff_s                -> kDefaultBackoffS
//   max_backoff_s            -> max(kDefaultMaxBackoffS, backoff_s) (a
//                               non-finite or negative backoff_s is left for
//                               ValidateJobSpec to refuse)
//   retry_on (empty)         -> [RETRY_ON_LOST]
// The scheduler also applies it to stored specs written before restart
// policies existed.
void ApplyRestartPolicyDefaults(joule::v1::RestartPolicy* policy);

// Checks `spec` (after ApplyJobSpecDefaults) against the limits above.
// `now` is the submit time, used for the deadline check.
// Returns OK or INVALID_ARGUMENT for the first violation, checking fields in
// a fixed order (the proto's field order; map entries by sorted key) so the
// answer is deterministic. The message starts with the field path, then says
// what is wrong and what is allowed, e.g.
//   "resources.gpus: must be >= 0, got -1"
//   "batch_size: min (128) must be <= max (64)"
// An optional field left unset (defaults not applied) is reported as
// "required".
absl::Status ValidateJobSpec(const joule::v1::JobSpec& spec, absl::Time now);

}  // namespace joule

#endif  // JOULE_SPEC_JOB_VALIDATION_H_
