#ifndef JOULE_SCHEDULER_STORE_LOCAL_STORE_REPAIR_H_
#define JOULE_SCHEDULER_STORE_LOCAL_STORE_REPAIR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"

namespace joule {

// What RepairLocalStore found and did.
struct RepairReport {
  // The log examined: <dir>/wal.<G>.
  std::string log_path;
  // False when the log had no bad record: nothing was changed, and the
  // fields below stay zero or empty except records_kept.
  bool repaired = false;
  // Intact records before the cut (every record of a sound log).
  int64_t records_kept = 0;
  // Where the log was cut: the offset of its first bad record.
  int64_t cut_offset = 0;
  // What was wrong there, e.g. "record crc mismatch".
  std::string problem;
  // The bad record was only a torn last write (which Open also drops by
  // itself) rather than damage to acknowledged data.
  bool torn_write = false;
  // The bad record plus the intact records found after it.
  int64_t records_dropped = 0;
  // False when there may be more (some bytes after the bad record belonged
  // to no intact record): then at least records_dropped were dropped.
  bool records_dropped_exact = true;
  // Bytes from the cut to the old end of the log.
  int64_t bytes_dropped = 0;
  // The damaged log, byte for byte: <dir>/wal.<G>.corrupt-<unix seconds>
  // (".<n>" appended if that name is taken).
  std::string copy_path;
  // Stored under kJobIdFloorKey (job_id_floor.h): the scheduler numbers new
  // jobs above it.
  int64_t job_id_floor = 0;
};

// One paragraph for an operator: what was wrong, what was dropped, where the
// copy is, and where job numbering resumes.
std::string FormatRepairReport(const RepairReport& report);

// Repairs the LocalStore in `dir` after Open refused a damaged log, for
// `joule-scheduler --repair-store`. The store must not be open (it takes the
// directory's lock: FAILED_PRECONDITION while a scheduler holds it).
//
//  1. Loads the snapshot. A damaged snapshot cannot be repaired: it holds
//     the state that the log only changes, so cutting anything out of it
//     would silently lose jobs that no later record mentions. That is
//     FAILED_PRECONDITION ("cannot repair a corrupt snapshot ... restore the
//     data directory from a backup"); nothing is changed.
//  2. Reads wal.<G> and finds its first bad record the way Open does
//     (AnalyzeLogDamage, local_store_io.h). None: OK, nothing changed.
//  3. Computes the job id floor F, so that no job id is handed out twice:
//       F = max(N of every "job-<N>" in the keys and values of every intact
//               record, in the snapshot and in the log before and after the
//               bad record; every floor already stored; every "job-<N>" in
//               the raw bytes that belong to no intact record)
//           + U / 22,  U = those raw bytes' count.
//     Why the margin: ids are handed out in order, so any id above the
//     visible maximum M that was ever given out is an id none of whose
//     records survived intact or left its number readable, and every such
//     job's submission record therefore lies wholly within the U unreadable
//     bytes. Records do not overlap and one that mentions "job-<N>" takes at
//     least 22 bytes (8 header, 4 count, 1 op, 4 key length, "job-N"), so
//     there are at most U / 22 of them, and the highest id ever handed out
//     is at most M + U / 22 = F. A digit flipped downward in the damaged
//     bytes only lowers what is read there, and is covered the same way; a
//     digit flipped upward only raises F. For a typical single damaged
//     record of a few hundred bytes the margin is about ten.
//  4. Keeps a copy of the damaged log, created exclusively (never over an
//     existing file) with mode 0600, fsync'd, and fsyncs the directory.
//  5. Writes wal.<G>.repair (0600): the log's bytes before the bad record,
//     then one record putting kJobIdFloorKey = F; fsyncs it, renames it over
//     wal.<G> and fsyncs the directory. The rename makes the cut and the
//     floor durable together: a crash leaves either the damaged log (and a
//     repair can run again, keeping another copy) or the repaired one.
//
// Thread-safe: repairs and Opens of one directory exclude each other through
// its lock. `clock` only names the copy.
absl::StatusOr<RepairReport> RepairLocalStore(
    const std::string& dir, const Clock& clock = *RealClock::Get());

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_LOCAL_STORE_REPAIR_H_
