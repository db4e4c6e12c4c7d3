// Any job trace, in one documented CSV format, for joule-sim. The Philly
// trace is one adapter (philly_trace.h); this is the format for everything
// else (another cluster's log, a synthetic mix).
//
// Format: a header line naming the columns, in any order, then one job per
// line:
//   arrival_s   seconds from the trace's start to the job's submission, >= 0
//   duration_s  seconds the job ran on the reference configuration (the work
//               model's: V100 at its maximum measured limit, the default
//               batch size), > 0
//   gpus        GPUs the job used, integer >= 1
//   user        optional: the owner or virtual cluster, for accounting
// Other columns are refused (a typo must not silently drop a field). Blank
// lines and lines starting with '#' are ignored. Rows need not be sorted.
//
// Parsing is strict: a malformed row fails the whole load with
// INVALID_ARGUMENT naming the file, the 1-based line and the column.
#ifndef JOULE_SIM_TRACE_JOB_TRACE_H_
#define JOULE_SIM_TRACE_JOB_TRACE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/trace/philly_trace.h"

namespace joule::sim {

// Reads a trace in the format above; jobs sorted by arrival (ties: file
// order), ids their 0-based data-row index. `limit` > 0 keeps the earliest
// `limit`. NOT_FOUND if the file cannot be opened.
absl::StatusOr<std::vector<TraceJob>> LoadJobTrace(const std::string& path, size_t limit = 0);

// Same, from the text of a file; `source` names it in errors.
absl::StatusOr<std::vector<TraceJob>> ParseJobTrace(const std::string& text,
                                                    const std::string& source,
                                                    size_t limit = 0);

// The Philly trace if the file starts with the Philly header, else the
// format above.
absl::StatusOr<std::vector<TraceJob>> LoadAnyTrace(const std::string& path, size_t limit = 0);

}  // namespace joule::sim

#endif  // JOULE_SIM_TRACE_JOB_TRACE_H_
