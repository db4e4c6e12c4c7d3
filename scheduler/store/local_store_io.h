#ifndef JOULE_SCHEDULER_STORE_LOCAL_STORE_IO_H_
#define JOULE_SCHEDULER_STORE_LOCAL_STORE_IO_H_

// The on-disk format of LocalStore's data directory and the file helpers that
// LocalStore (local_store.h) and RepairLocalStore (local_store_repair.h)
// share, so that both read the same bytes the same way. The format itself is
// described in LocalStore's class comment. Internal to this package's store
// code and its tests and fuzzers; stateless and thread-compatible.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/store/store.h"

namespace joule {
namespace local_store_internal {

// File names in a data directory.
inline constexpr char kLockFile[] = "LOCK";
inline constexpr char kSnapshotFile[] = "snapshot";
inline constexpr char kSnapshotTmpFile[] = "snapshot.tmp";
inline constexpr char kLogPrefix[] = "wal.";

// Scheduler state holds job specs with their environments: only the owner may
// read it.
inline constexpr mode_t kDirMode = 0700;
inline constexpr mode_t kFileMode = 0600;

inline constexpr char kSnapshotMagic[] = "JOULESNP";  // 8 bytes, no NUL
inline constexpr size_t kMagicBytes = 8;
inline constexpr uint32_t kSnapshotVersion = 1;
// magic, version, generation, entry count, crc of the preceding bytes.
inline constexpr size_t kSnapshotHeaderBytes = kMagicBytes + 4 + 8 + 8 + 4;

inline constexpr size_t kRecordHeaderBytes = 8;  // u32 length, u32 crc
// A valid payload is at most this long: kMaxCommitBytes of keys and values
// plus at most 9 bytes of framing per mutation (each has a key of >= 1 byte)
// plus the count. Anything longer is corruption, not a real record.
inline constexpr uint64_t kMaxRecordPayloadBytes =
    4 + 10 * uint64_t{kMaxCommitBytes};

inline constexpr uint8_t kOpPut = 1;
inline constexpr uint8_t kOpDelete = 2;

uint32_t Crc32(absl::string_view data);
void AppendU32(std::string* out, uint32_t v);
void AppendU64(std::string* out, uint64_t v);
uint32_t LoadU32(const char* p);
uint64_t LoadU64(const char* p);

std::string EncodeMutations(const std::vector<StoreMutation>& mutations);
// Reads the mutations back; DATA_LOSS if the payload is not exactly an
// encoding.
absl::StatusOr<std::vector<StoreMutation>> DecodeMutations(
    absl::string_view payload);
// [u32 length][u32 crc32][payload]
void AppendRecord(std::string* out, absl::string_view payload);

// What is found where a record should start.
enum class RecordCheck {
  kOk,                 // a whole record whose crc matches and that decodes
  kEnd,                // clean end of file
  kShortHeader,        // fewer than 8 bytes left
  kImplausibleLength,  // the length field exceeds any valid payload
  kPastEnd,            // the payload runs past the end of the file
  kCrcMismatch,        // complete, but the crc does not match
  kUndecodable,        // the crc matches, the payload is not an encoding
};
absl::string_view RecordCheckText(RecordCheck check);

// Checks the record starting at `offset` in `bytes` (a whole log, or from
// some record on). On kOk, kCrcMismatch and kUndecodable `*record_bytes` is
// its size including the header; on kOk `*mutations` (when not null) holds
// its contents.
RecordCheck CheckRecordAt(absl::string_view bytes, size_t offset,
                          uint64_t* record_bytes,
                          std::vector<StoreMutation>* mutations);

// Reads the record at `offset` of an open file of `file_size` bytes and
// checks it as CheckRecordAt does. Only I/O errors are errors.
absl::StatusOr<RecordCheck> ReadRecordAt(int fd, const std::string& path,
                                         int64_t offset, int64_t file_size,
                                         uint64_t* record_bytes,
                                         std::vector<StoreMutation>* mutations);

// The first bad record of a log and what follows it; see AnalyzeLogDamage.
struct LogDamage {
  int64_t offset = 0;  // where the bad record starts
  RecordCheck problem = RecordCheck::kOk;
  // An incomplete last write (crash or short write), never acknowledged:
  // safe to cut off. Otherwise the log is corrupt.
  bool torn = false;
  int64_t bytes_from_offset = 0;  // file size - offset
  // Records after the bad one whose crc matches and that decode:
  // (offset, size including header).
  std::vector<std::pair<int64_t, int64_t>> intact_after;
  // False when some bytes after the bad record belong to no intact record
  // (more damage, or a length field that cannot be trusted): then there are
  // at least intact_after.size() records after it, maybe more.
  bool count_exact = true;
};

// Looks at `tail`, the bytes of a log from its first bad record (at
// `tail_offset`, not kOk and not kEnd) to the end of the file:
//  1. Finds the intact records after it: walks by the bad record's length
//     field where it can be trusted (the header is sane and the record ends
//     within the file), then record by record; wherever a position holds no
//     intact record it moves on a byte at a time until one starts
//     (resynchronizing), and the count becomes inexact. The search gives
//     up after checksumming 1 GiB of candidates that were not records
//     (only crafted input gets there); the damage is then never torn.
//  2. Decides whether the bad record is a torn last write. It is when no
//     intact record follows and the bytes from the bad record on are a
//     strict prefix of some valid record: a short header, or a sane header
//     whose length runs past what was written and a payload that is the
//     start of a mutation encoding without being complete before that
//     length. Bytes "written" end at the end of the file, or earlier where
//     the file ends in zeros that cover it from the bad record on or from a
//     512-byte boundary on (an extending write whose data blocks never
//     reached the disk reads back as zeros, in whole sectors; with a
//     partially filled sector before it, from the old end of file).
//     Everything else is corruption: a complete record whose crc fails (the
//     last one too), a length that no record can have, a length running
//     past the end of the file while intact records follow or while the
//     payload already holds a complete encoding.
LogDamage AnalyzeLogDamage(absl::string_view tail, int64_t tail_offset);

// DATA_LOSS naming the log, the offset and what follows, for a corrupt log.
absl::Status LogCorruptionError(const std::string& path,
                                const LogDamage& damage);

// A snapshot file's contents. Loading fails with DATA_LOSS naming the file
// and the byte offset of the damage, or FAILED_PRECONDITION for an
// unsupported version.
struct SnapshotContents {
  uint64_t generation = 0;
  std::map<std::string, std::string> data;
};
absl::StatusOr<SnapshotContents> ReadSnapshotFile(int fd,
                                                  const std::string& path);

// --- Files -----------------------------------------------------------------

absl::Status ErrnoError(int error_number, absl::string_view op,
                        absl::string_view path);
std::string JoinPath(absl::string_view dir, absl::string_view name);
std::string LogFileName(uint64_t generation);  // "wal.<G>"

// Reads up to `size` bytes at the fd's position; fewer only at end of file.
absl::StatusOr<size_t> ReadFull(int fd, const std::string& path, char* buf,
                                size_t size);
// Reads `size` bytes at `offset` (fewer only at end of file).
absl::StatusOr<std::string> ReadAt(int fd, const std::string& path,
                                   int64_t offset, size_t size);
absl::Status WriteFull(int fd, const std::string& path,
                       absl::string_view data);
absl::Status FsyncDir(const std::string& dir);
absl::StatusOr<int64_t> FileSize(int fd, const std::string& path);
absl::Status RemoveIfExists(const std::string& path);

// mkdir -p with kDirMode, fsyncing the parent of every directory it creates
// so that the new entries survive a crash.
absl::Status MakeDirs(const std::string& dir);

// Removes group and other permissions from the open file or directory `fd`
// if it has any. Returns a note such as "wal.0 0644->0600" when it changed
// something, "" when not. Failing to change it (not the owner) is only
// noted: the mode is a second line of defence, not the data's integrity.
std::string TightenMode(int fd, const std::string& path);

// Opens (creating) `dir`/LOCK and takes an exclusive flock() on it, which
// belongs to the open file description: a second lock of the same directory,
// from this process or another, fails with FAILED_PRECONDITION. Closing the
// returned fd releases it.
absl::StatusOr<int> LockDataDir(const std::string& dir);

}  // namespace local_store_internal
}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_LOCAL_STORE_IO_H_
