#include "scheduler/store/local_store_repair.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "scheduler/store/job_id_floor.h"
#include "scheduler/store/local_store_io.h"
#include "scheduler/store/store.h"

namespace joule {

using local_store_internal::AnalyzeLogDamage;
using local_store_internal::AppendRecord;
using local_store_internal::CheckRecordAt;
using local_store_internal::EncodeMutations;
using local_store_internal::ErrnoError;
using local_store_internal::FileSize;
using local_store_internal::FsyncDir;
using local_store_internal::JoinPath;
using local_store_internal::kFileMode;
using local_store_internal::kRecordHeaderBytes;
using local_store_internal::kSnapshotFile;
using local_store_internal::LogDamage;
using local_store_internal::LogFileName;
using local_store_internal::ReadAt;
using local_store_internal::ReadSnapshotFile;
using local_store_internal::RecordCheck;
using local_store_internal::RecordCheckText;
using local_store_internal::SnapshotContents;
using local_store_internal::WriteFull;

namespace {

// The smallest record that can mention a job id: a delete of key "job-N".
constexpr int64_t kMinJobRecordBytes = kRecordHeaderBytes + 4 + 1 + 4 + 5;
// Copies made within one second of each other get ".1", ".2", ...
constexpr int kMaxCopyNames = 1000;

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

void NoteJobNumbers(absl::string_view key, absl::string_view value,
                    bool is_put, int64_t* max) {
  *max = std::max({*max, MaxJobNumberIn(key), MaxJobNumberIn(value)});
  if (is_put && key == kJobIdFloorKey) {
    if (absl::StatusOr<int64_t> floor = ParseJobIdFloor(value); floor.ok()) {
      *max = std::max(*max, *floor);
    }
  }
}

void NoteJobNumbers(const std::vector<StoreMutation>& mutations,
                    int64_t* max) {
  for (const StoreMutation& m : mutations) {
    NoteJobNumbers(m.key, m.value, m.op == StoreMutation::Op::kPut, max);
  }
}

// The whole file; NOT_FOUND if it does not exist.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path);
    return ErrnoError(errno, "open", path);
  }
  FdCloser closer{fd};
  absl::StatusOr<int64_t> size = FileSize(fd, path);
  if (!size.ok()) return size.status();
  return ReadAt(fd, path, 0, static_cast<size_t>(*size));
}

// Writes `bytes` to a file opened with `flags` (plus O_WRONLY | O_CREAT) and
// fsyncs it. EEXIST is returned as ALREADY_EXISTS.
absl::Status WriteDurably(const std::string& path, int flags,
                          absl::string_view bytes) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, kFileMode);
  if (fd < 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(path);
    return ErrnoError(errno, "create", path);
  }
  FdCloser closer{fd};
  if (absl::Status s = WriteFull(fd, path, bytes); !s.ok()) return s;
  if (fsync(fd) != 0) return ErrnoError(errno, "fsync", path);
  return absl::OkStatus();
}

// Step 4: a copy under a name no file has yet.
absl::StatusOr<std::string> KeepCopy(const std::string& log_path,
                                     absl::string_view bytes,
                                     const Clock& clock) {
  const std::string base = absl::StrCat(
      log_path, ".corrupt-", absl::ToUnixSeconds(clock.Now()));
  for (int n = 0; n < kMaxCopyNames; ++n) {
    const std::string path = n == 0 ? base : absl::StrCat(base, ".", n);
    absl::Status s = WriteDurably(path, O_EXCL, bytes);
    if (absl::IsAlreadyExists(s)) continue;
    if (!s.ok()) return s;
    return path;
  }
  return absl::AlreadyExistsError(
      absl::StrCat("too many copies named ", base, ".*"));
}

}  // namespace

std::string FormatRepairReport(const RepairReport& report) {
  if (!report.repaired) {
    return absl::StrCat(report.log_path, ": ", report.records_kept,
                        " intact records and no damage; nothing to repair.");
  }
  return absl::StrCat(
      report.log_path, ": ",
      report.torn_write ? "torn last write" : "corrupt record", " at offset ",
      report.cut_offset, " (", report.problem, "). Kept the ",
      report.records_kept, " records before it; dropped ",
      report.records_dropped_exact ? "" : "at least ", report.records_dropped,
      " records (", report.bytes_dropped,
      " bytes) from there to the end of the log. The damaged log is kept as ",
      report.copy_path, ". New job ids start above job-", report.job_id_floor,
      ".");
}

absl::StatusOr<RepairReport> RepairLocalStore(const std::string& dir,
                                              const Clock& clock) {
  std::string clean_dir = dir;
  while (clean_dir.size() > 1 && clean_dir.back() == '/') clean_dir.pop_back();
  if (clean_dir.empty()) {
    return absl::InvalidArgumentError("store data directory must not be empty");
  }
  struct stat st;
  if (stat(clean_dir.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no store in ", clean_dir,
                                              ": the directory does not exist"));
    }
    return ErrnoError(errno, "stat", clean_dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(clean_dir, " is not a directory"));
  }
  absl::StatusOr<int> lock_fd = local_store_internal::LockDataDir(clean_dir);
  if (!lock_fd.ok()) return lock_fd.status();
  FdCloser lock_closer{*lock_fd};

  // 1. The snapshot.
  int64_t max_job_number = 0;
  uint64_t generation = 0;
  const std::string snapshot_path = JoinPath(clean_dir, kSnapshotFile);
  const int snapshot_fd = open(snapshot_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (snapshot_fd >= 0) {
    FdCloser snapshot_closer{snapshot_fd};
    absl::StatusOr<SnapshotContents> snapshot =
        ReadSnapshotFile(snapshot_fd, snapshot_path);
    if (absl::IsDataLoss(snapshot.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot repair a corrupt snapshot: ", snapshot.status().message(),
          ". The log holds only changes made after the snapshot, so what it "
          "held cannot be rebuilt; restore the data directory from a backup"));
    }
    if (!snapshot.ok()) return snapshot.status();
    generation = snapshot->generation;
    for (const auto& [key, value] : snapshot->data) {
      NoteJobNumbers(key, value, /*is_put=*/true, &max_job_number);
    }
  } else if (errno != ENOENT) {
    return ErrnoError(errno, "open", snapshot_path);
  }

  // 2. The log's first bad record.
  RepairReport report;
  report.log_path = JoinPath(clean_dir, LogFileName(generation));
  absl::StatusOr<std::string> log = ReadWholeFile(report.log_path);
  if (absl::IsNotFound(log.status())) return report;
  if (!log.ok()) return log.status();
  size_t cut = 0;
  while (true) {
    uint64_t record_bytes = 0;
    std::vector<StoreMutation> mutations;
    const RecordCheck check =
        CheckRecordAt(*log, cut, &record_bytes, &mutations);
    if (check == RecordCheck::kEnd) return report;  // sound
    if (check != RecordCheck::kOk) break;
    NoteJobNumbers(mutations, &max_job_number);
    ++report.records_kept;
    cut += record_bytes;
  }
  const LogDamage damage =
      AnalyzeLogDamage(absl::string_view(*log).substr(cut), cut);

  // 3. The job id floor, from everything still readable after the cut.
  int64_t unreadable_bytes = damage.bytes_from_offset;
  size_t unread_from = cut;
  for (const auto& [offset, size] : damage.intact_after) {
    const size_t at = static_cast<size_t>(offset);
    max_job_number = std::max(
        max_job_number,
        MaxJobNumberIn(absl::string_view(*log).substr(unread_from,
                                                      at - unread_from)));
    uint64_t record_bytes = 0;
    std::vector<StoreMutation> mutations;
    CheckRecordAt(*log, at, &record_bytes, &mutations);
    NoteJobNumbers(mutations, &max_job_number);
    unreadable_bytes -= size;
    unread_from = at + static_cast<size_t>(size);
  }
  max_job_number =
      std::max(max_job_number,
               MaxJobNumberIn(absl::string_view(*log).substr(unread_from)));
  const int64_t floor = max_job_number + unreadable_bytes / kMinJobRecordBytes;

  // 4. The copy.
  absl::StatusOr<std::string> copy_path =
      KeepCopy(report.log_path, *log, clock);
  if (!copy_path.ok()) return copy_path.status();
  if (absl::Status s = FsyncDir(clean_dir); !s.ok()) return s;

  // 5. The cut log and the floor, in one rename.
  std::string repaired = log->substr(0, cut);
  AppendRecord(&repaired,
               EncodeMutations({StoreMutation{StoreMutation::Op::kPut,
                                              kJobIdFloorKey,
                                              absl::StrCat(floor)}}));
  // Left over only by a repair that crashed before its rename.
  const std::string tmp_path = absl::StrCat(report.log_path, ".repair");
  if (absl::Status s = local_store_internal::RemoveIfExists(tmp_path);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteDurably(tmp_path, O_EXCL, repaired); !s.ok()) {
    return s;
  }
  if (rename(tmp_path.c_str(), report.log_path.c_str()) != 0) {
    return ErrnoError(errno, "rename to", report.log_path);
  }
  if (absl::Status s = FsyncDir(clean_dir); !s.ok()) return s;

  report.repaired = true;
  report.cut_offset = static_cast<int64_t>(cut);
  report.problem = std::string(RecordCheckText(damage.problem));
  report.torn_write = damage.torn;
  report.records_dropped =
      1 + static_cast<int64_t>(damage.intact_after.size());
  report.records_dropped_exact = damage.count_exact;
  report.bytes_dropped = damage.bytes_from_offset;
  report.copy_path = *std::move(copy_path);
  report.job_id_floor = floor;
  return report;
}

}  // namespace joule
