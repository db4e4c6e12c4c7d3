// Client-side parser for job files: one YAML document whose keys are the
// joule.v1.JobSpec field names.
//
//   name: mnist-mlp
//   type: training            # training | inference
//   command: /opt/jobs/mlp_trainer
//   args: ["--epochs", "3"]
//   env: {LOG_LEVEL: info}
//   resources:
//     gpus: 1
//     cpus: 2
//     memory: 2Gi             # a quantity (see ParseQuantity), or
//                             # memory_bytes: <integer>
//     gpu_model: V100
//   replicas: 2
//   batch_size: {default: 64, min: 16, max: 256}   # or default_size
//   shard_count: 16
//   objective: {max_slowdown: 1.1}   # or deadline: <RFC 3339 time>, or
//                                    # energy_time_weight: 0.5; at most one
//   labels: {team: vision}
//   user: alice
//   job_class: mnist
//   working_dir: /tmp
//   restart_policy:           # when a task is lost or fails
//     max_retries: 3
//     backoff_s: 10           # doubles per retry...
//     max_backoff_s: 300      # ...up to this
//     retry_on: [lost, failed]  # default: [lost]
//
// The parser checks the shape of the file, not the limits: a negative or
// oversized number that fits the proto field is passed through, and the
// scheduler's ValidateJobSpec refuses it. It does refuse what cannot be put
// into the proto faithfully: unknown or duplicate keys, the wrong kind of node,
// text where a number belongs, integers that overflow the field, quantities
// with a bad suffix, deadlines that are not RFC 3339, more than one objective
// goal, strings that are not UTF-8.
//
// Presence: an `optional` proto field (replicas, resources.gpus/cpus/
// memory_bytes, restart_policy.max_retries/backoff_s/max_backoff_s) is set
// only when its key appears, so `gpus: 0` is an explicit zero and a missing
// `gpus` takes the scheduler's default. A key with a null
// value (`gpus:` or `gpus: ~`) counts as missing.
//
// Errors are INVALID_ARGUMENT and start with the position (1-based) and the
// field path, e.g.
//   line 4, column 9: resources.gpus: expected an integer, got "two"
//   line 3, column 1: unknown field "comand"; allowed: name, type, ...
//
// yaml-cpp reports errors by throwing; the exceptions are caught here and never
// leave these functions. Thread-safe.

#ifndef JOULE_SPEC_JOB_YAML_H_
#define JOULE_SPEC_JOB_YAML_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "joule/v1/job.pb.h"

namespace joule {

// Largest job file accepted, checked before parsing: 16 MiB. (The largest
// valid spec is far smaller; this only bounds the parser's work.)
inline constexpr int64_t kMaxJobYamlBytes = int64_t{16} << 20;

// Parses one job document. See the file comment for the format and errors.
absl::StatusOr<joule::v1::JobSpec> ParseJobYaml(absl::string_view yaml);

// Reads and parses the job file at `path`. Errors are prefixed with the path.
// NOT_FOUND / PERMISSION_DENIED / ... when the file cannot be read;
// INVALID_ARGUMENT when it is larger than kMaxJobYamlBytes or does not parse.
absl::StatusOr<joule::v1::JobSpec> ParseJobYamlFile(const std::string& path);

// Parses a byte quantity: an optionally signed decimal number with an optional
// suffix, Ki Mi Gi Ti (powers of 1024) or k M G T (powers of 1000), e.g.
// "2Gi", "512Mi", "1.5Gi", "1000000", "4G". The result must be a whole number
// of bytes that fits in int64. Negative quantities parse (the caller's
// validation refuses them). On error returns INVALID_ARGUMENT with a message
// that quotes the input and says what is allowed; `*bytes` is then unchanged.
absl::Status ParseQuantity(absl::string_view text, int64_t* bytes);

}  // namespace joule

#endif  // JOULE_SPEC_JOB_YAML_H_
