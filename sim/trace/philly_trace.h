// Loader for the Microsoft Philly GPU-cluster job trace.
//
// Data: the Microsoft Philly trace (Sep-Dec 2017), as processed for the Sia
// scheduler artifact (repository siasosp23/artifacts, path
// sia-simulator/traces/philly.csv). Underlying data licensed CC BY 4.0
// (Microsoft Research; Jeon et al., "Analysis of Large-Scale Multi-Tenant GPU
// Clusters for DNN Training Workloads", USENIX ATC 2019). The project reads it
// from ../shared/data/traces/philly.csv; it is never copied into the tree.
//
// Format: a header line `timestamp,duration,num_gpus,gpu_time,cluster`, then
// one job per line. `timestamp` is the submit time "YYYY-MM-DD HH:MM:SS"
// (treated as UTC; no time-zone database is consulted), `duration` the seconds
// the job ran, `num_gpus` its GPU count, `gpu_time` duration x GPUs (parsed
// and checked to be a finite number, otherwise unused), `cluster` the
// virtual-cluster id. Rows are not sorted by time in the file.
//
// Parsing is strict. Any malformed row makes the whole load fail with
// INVALID_ARGUMENT naming the file, the 1-based line, the 1-based column and
// the field. In particular a row with duration <= 0 or num_gpus < 1 is
// refused, not skipped: the shipped file has no such row (checked with awk:
// minimum duration 1 s, minimum num_gpus 1), so a zero-duration row means the
// input is not the file we expect. Blank lines (the shipped file ends with
// one) are ignored.
#ifndef JOULE_SIM_TRACE_PHILLY_TRACE_H_
#define JOULE_SIM_TRACE_PHILLY_TRACE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace joule::sim {

// One job of the trace.
struct TraceJob {
  // 0-based index of the job's data row in file order (blank lines and the
  // header do not count).
  int64_t id = 0;
  // Seconds since the earliest submit time in the whole file.
  double arrival_s = 0;
  // Seconds the job ran in Philly (> 0).
  double duration_s = 0;
  // GPUs the job used (>= 1).
  int32_t gpus = 0;
  // Philly virtual-cluster id, e.g. "6214e9".
  std::string cluster;
};

// Reads the trace at `path` and returns its jobs sorted by arrival_s; jobs
// with equal arrival keep file order. If `limit` > 0, only the `limit`
// earliest-arriving jobs are returned (the whole file is still parsed and
// validated, and arrival_s stays relative to the earliest submit in the
// file). Errors: NOT_FOUND if the file cannot be opened, INVALID_ARGUMENT for
// a bad header or row.
absl::StatusOr<std::vector<TraceJob>> LoadPhillyTrace(const std::string& path,
                                                      size_t limit = 0);

// Parses "YYYY-MM-DD HH:MM:SS" as UTC and returns seconds since the Unix
// epoch; INVALID_ARGUMENT (without location) if malformed or out of range.
// Exposed for tests.
absl::StatusOr<int64_t> ParsePhillyTimestamp(const std::string& text);

}  // namespace joule::sim

#endif  // JOULE_SIM_TRACE_PHILLY_TRACE_H_
