#ifndef JOULE_SCHEDULER_STORE_LOCAL_STORE_H_
#define JOULE_SCHEDULER_STORE_LOCAL_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/store/store.h"

namespace joule {

struct LocalStoreOptions {
  // Compact (write a snapshot and start an empty log) once the log grows past
  // this many bytes.
  int64_t compact_log_bytes = 64 * 1024 * 1024;
};

// An embedded, crash-safe Store kept in one local data directory: the whole
// key space lives in memory (an ordered map) and every mutation is made
// durable in a write-ahead log before it becomes visible.
//
// Files in the data directory (mode 0700; files 0600, because stored job
// specs carry environment values. Open tightens looser modes it finds, logs
// that once and counts it in Stats):
//   LOCK          exclusive flock() held while open; a second Open of the same
//                 directory (from any process) fails with FAILED_PRECONDITION.
//   snapshot      full state as of the start of log generation G (optional;
//                 absent means "empty state, G = 0").
//   wal.<G>       the log of generation G: mutations since that snapshot.
//   snapshot.tmp  a compaction in progress; removed by Open.
//   wal.<G>.corrupt-<unix seconds>  a damaged log kept by RepairLocalStore
//                 (local_store_repair.h); never read by Open.
//   wal.<G>.repair  a repair's new log before its rename; ignored by Open.
//
// Record format (log and snapshot), little-endian:
//   [u32 payload length][u32 crc32 of payload][payload]
//   payload = [u32 mutation count] then per mutation
//             [u8 op: 1 put, 2 delete][u32 key length][key]
//             and for puts [u32 value length][value].
// A log holds one record per Commit/Put/Delete. A snapshot starts with a
// 32-byte header ["JOULESNP"][u32 version = 1][u64 generation G]
// [u64 entry count][u32 crc32 of the preceding 28 bytes], followed by one
// single-put record per entry, in key order.
//
// Algorithm:
//  1. Commit validates, encodes the mutations into one record, appends it with
//     a single write() and fdatasync()s the log, then applies it to the map.
//     An I/O error leaves the store refusing further writes (reads still
//     work) until it is reopened, because after a failed write or fsync the
//     log's contents are unknown.
//  2. Open takes the lock, removes snapshot.tmp, loads the snapshot (a corrupt
//     snapshot is DATA_LOSS naming the file and the offset: it was fsync'd
//     before it was renamed into place, so damage is not a torn write),
//     removes stale logs, and replays wal.<G> up to its first bad record.
//     The store fails closed there (see AnalyzeLogDamage in
//     local_store_io.h for the exact rule):
//       - a torn last write (an interrupted append: a short header, or a
//         record that runs past the end of the file or into zeroed sectors
//         and whose bytes are the start of a valid record, with no intact
//         record after it) was never acknowledged: the log is truncated
//         there and fsync'd, and the dropped byte count goes to stderr and
//         Stats;
//       - anything else (a complete record whose crc fails or that does not
//         decode, the last one included; a length no record can have; a
//         length running past the end while intact records follow) is
//         damage to acknowledged data: Open fails with DATA_LOSS naming the
//         file, the offset and how many intact records follow, and leaves
//         the file untouched. RepairLocalStore cuts the log there
//         explicitly, after keeping a copy.
//  3. When the log exceeds compact_log_bytes after a commit, compaction runs
//     with writers blocked:
//       a. write snapshot.tmp naming generation G+1, fsync it;
//       b. create an empty wal.<G+1>, fsync it;
//       c. rename snapshot.tmp -> snapshot;
//       d. fsync the directory (commit point: from here on wal.<G> is stale);
//       e. switch appends to wal.<G+1>, then unlink wal.<G>.
//     Crash-safety: the generation in the snapshot says which single log to
//     replay, so a log is never replayed over a snapshot that already contains
//     it, nor over a newer one. Writers are blocked from (a) until (e), so
//     neither log changes meanwhile and both snapshots are consistent with
//     them. The rename is atomic, so a crash before (d) completes leaves
//     either snapshot: with the old one (G), Open discards snapshot.tmp and
//     the empty wal.<G+1> and replays wal.<G>; with the new one (G+1), Open
//     deletes the stale wal.<G> unread and replays the empty wal.<G+1>. After
//     (d) only the second case remains. A failure before (c) abandons the
//     compaction (the old snapshot and log stay valid; it is retried after
//     another compact_log_bytes of log); a failure of (d) makes the store
//     refuse writes, as in step 1.
//
// Commits are serialized (one fsync each, no group commit); reads proceed
// concurrently with a commit's fsync and with compaction.
//
// Thread-safe: the write path (log file, generation, counters) is guarded by
// `write_mu_`; the map is guarded by `mu_`, and is modified only while
// holding both, so holders of `write_mu_` may read it under a reader lock.
class LocalStore : public Store {
 public:
  // Counters for tests and metrics.
  struct Stats {
    // Recovery at Open.
    int64_t snapshot_entries_loaded = 0;
    int64_t records_replayed = 0;
    int64_t bytes_truncated = 0;  // torn last write dropped
    // Data directory and files found readable or writable by others.
    int64_t loose_modes_tightened = 0;
    // Since Open.
    int64_t compactions = 0;
    int64_t compaction_failures = 0;  // abandoned, old log kept
    // Now.
    int64_t log_bytes = 0;
    uint64_t log_generation = 0;
    std::string log_path;
  };

  // Opens (creating if needed) the store in `dir`. DATA_LOSS when the
  // snapshot or the log is damaged beyond a torn last write (nothing is
  // changed on disk then); FAILED_PRECONDITION when another process has it
  // open.
  static absl::StatusOr<std::unique_ptr<LocalStore>> Open(
      const std::string& dir, LocalStoreOptions options = {});

  ~LocalStore() override;
  LocalStore(const LocalStore&) = delete;
  LocalStore& operator=(const LocalStore&) = delete;

  absl::Status Put(absl::string_view key, absl::string_view value) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override;
  absl::StatusOr<std::string> Get(absl::string_view key) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override;

  Stats GetStats() const;

 private:
  LocalStore(std::string dir, LocalStoreOptions options, int lock_fd);

  // Open's steps after the lock is held.
  // `mode_notes` collects the files whose modes were tightened.
  absl::Status Recover(std::vector<std::string>* mode_notes);
  absl::Status LoadSnapshot(const std::string& path,
                            std::vector<std::string>* mode_notes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status RemoveStaleFiles() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status OpenAndReplayLog(std::vector<std::string>* mode_notes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  // Validated mutations -> one durable log record -> map.
  absl::Status CommitValidated(const std::vector<StoreMutation>& mutations);
  void Apply(const std::vector<StoreMutation>& mutations)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  void MaybeCompact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status Compact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status WriteSnapshot(const std::string& path, uint64_t generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  std::string LogPath(uint64_t generation) const;

  const std::string dir_;
  const LocalStoreOptions options_;
  const int lock_fd_;

  mutable absl::Mutex write_mu_;
  int log_fd_ ABSL_GUARDED_BY(write_mu_) = -1;
  uint64_t generation_ ABSL_GUARDED_BY(write_mu_) = 0;
  int64_t log_bytes_ ABSL_GUARDED_BY(write_mu_) = 0;
  // Log size at which the next compaction is attempted.
  int64_t compact_at_bytes_ ABSL_GUARDED_BY(write_mu_) = 0;
  // Non-OK after an I/O error that leaves the log's state unknown.
  absl::Status write_error_ ABSL_GUARDED_BY(write_mu_);
  Stats stats_ ABSL_GUARDED_BY(write_mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_LOCAL_STORE_H_
