#ifndef JOULE_SCHEDULER_STORE_JOB_ID_FLOOR_H_
#define JOULE_SCHEDULER_STORE_JOB_ID_FLOOR_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/store/store.h"

namespace joule {

// Job ids are "job-<N>", N counting up from 1 (Scheduler::SubmitJob), and a
// job's record is never deleted, so the stored jobs alone keep ids unique.
// (The one record deleted is that of a submission the store refused: its
// write's outcome was unknown, and nobody was told its id, so handing the
// number out again after a restart reuses no id anyone holds.)
// A store repair (RepairLocalStore) drops damaged records, and with them
// perhaps the newest jobs, whose ids users and scripts may still hold. So the
// repair stores, under kJobIdFloorKey, the highest job number that may have
// been handed out (decimal), and the scheduler numbers new jobs above it as
// well as above every stored job.
inline constexpr char kJobIdFloorKey[] = "meta/job_id_floor";
inline constexpr char kJobIdPrefix[] = "job-";
// A longer run of digits is not a job number (1e18 submissions).
inline constexpr int kMaxJobNumberDigits = 18;

// The floor stored in `store`; 0 when there is none. DATA_LOSS when the
// value is not a decimal number of at most kMaxJobNumberDigits digits.
absl::StatusOr<int64_t> ReadJobIdFloor(const Store& store);
absl::StatusOr<int64_t> ParseJobIdFloor(absl::string_view value);

// The largest N of any "job-<N>" in `bytes` (raw bytes: a key, a serialized
// job, or the remains of a damaged record); 0 if there is none. Digit runs
// longer than kMaxJobNumberDigits are skipped. A digit run is read whole, so
// an id followed by digit-valued bytes reads high, never low.
int64_t MaxJobNumberIn(absl::string_view bytes);

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_JOB_ID_FLOOR_H_
