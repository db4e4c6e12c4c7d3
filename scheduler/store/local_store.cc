#include "scheduler/store/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "scheduler/store/local_store_io.h"

namespace joule {

using local_store_internal::AnalyzeLogDamage;
using local_store_internal::AppendRecord;
using local_store_internal::EncodeMutations;
using local_store_internal::ErrnoError;
using local_store_internal::FileSize;
using local_store_internal::FsyncDir;
using local_store_internal::JoinPath;
using local_store_internal::kFileMode;
using local_store_internal::kLogPrefix;
using local_store_internal::kMagicBytes;
using local_store_internal::kRecordHeaderBytes;
using local_store_internal::kSnapshotFile;
using local_store_internal::kSnapshotMagic;
using local_store_internal::kSnapshotTmpFile;
using local_store_internal::kSnapshotVersion;
using local_store_internal::LogCorruptionError;
using local_store_internal::LogDamage;
using local_store_internal::LogFileName;
using local_store_internal::ReadAt;
using local_store_internal::ReadRecordAt;
using local_store_internal::ReadSnapshotFile;
using local_store_internal::RecordCheck;
using local_store_internal::RecordCheckText;
using local_store_internal::RemoveIfExists;
using local_store_internal::SnapshotContents;
using local_store_internal::TightenMode;
using local_store_internal::WriteFull;

namespace {

constexpr size_t kSnapshotWriteChunkBytes = 1 << 20;

// Closes a file descriptor when it goes out of scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(
    const std::string& dir, LocalStoreOptions options) {
  std::string clean_dir = dir;
  while (clean_dir.size() > 1 && clean_dir.back() == '/') clean_dir.pop_back();
  if (clean_dir.empty()) {
    return absl::InvalidArgumentError("store data directory must not be empty");
  }
  if (options.compact_log_bytes <= 0) {
    return absl::InvalidArgumentError("compact_log_bytes must be positive");
  }
  if (absl::Status s = local_store_internal::MakeDirs(clean_dir); !s.ok()) {
    return s;
  }
  // A directory made by an older version, or by hand, may be open to others.
  std::vector<std::string> mode_notes;
  {
    const int dir_fd =
        open(clean_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return ErrnoError(errno, "open directory", clean_dir);
    FdCloser closer{dir_fd};
    std::string note = TightenMode(dir_fd, clean_dir);
    if (!note.empty()) mode_notes.push_back(std::move(note));
  }

  absl::StatusOr<int> lock_fd = local_store_internal::LockDataDir(clean_dir);
  if (!lock_fd.ok()) return lock_fd.status();
  std::string note = TightenMode(*lock_fd, JoinPath(clean_dir, local_store_internal::kLockFile));
  if (!note.empty()) mode_notes.push_back(std::move(note));

  std::unique_ptr<LocalStore> store(
      new LocalStore(std::move(clean_dir), options, *lock_fd));
  absl::Status recovered = store->Recover(&mode_notes);
  if (!mode_notes.empty()) {
    std::fprintf(stderr,
                 "joule store: %s was open to other users; permissions "
                 "tightened: %s\n",
                 store->dir_.c_str(), absl::StrJoin(mode_notes, ", ").c_str());
  }
  if (!recovered.ok()) return recovered;
  return store;
}

LocalStore::LocalStore(std::string dir, LocalStoreOptions options, int lock_fd)
    : dir_(std::move(dir)), options_(options), lock_fd_(lock_fd) {}

LocalStore::~LocalStore() {
  absl::MutexLock lock(&write_mu_);
  if (log_fd_ >= 0) close(log_fd_);
  close(lock_fd_);  // releases the flock
}

std::string LocalStore::LogPath(uint64_t generation) const {
  return JoinPath(dir_, LogFileName(generation));
}

absl::Status LocalStore::Recover(std::vector<std::string>* mode_notes) {
  absl::MutexLock lock(&write_mu_);
  // A leftover snapshot.tmp is an unfinished compaction: never renamed into
  // place, so the current snapshot and log do not depend on it.
  if (absl::Status s = RemoveIfExists(JoinPath(dir_, kSnapshotTmpFile));
      !s.ok()) {
    return s;
  }
  const std::string snapshot_path = JoinPath(dir_, kSnapshotFile);
  if (access(snapshot_path.c_str(), F_OK) == 0) {
    if (absl::Status s = LoadSnapshot(snapshot_path, mode_notes); !s.ok()) {
      return s;
    }
  } else if (errno != ENOENT) {
    return ErrnoError(errno, "access", snapshot_path);
  }
  if (absl::Status s = RemoveStaleFiles(); !s.ok()) return s;
  if (absl::Status s = OpenAndReplayLog(mode_notes); !s.ok()) return s;
  compact_at_bytes_ = options_.compact_log_bytes;
  stats_.loose_modes_tightened = static_cast<int64_t>(mode_notes->size());
  return absl::OkStatus();
}

absl::Status LocalStore::LoadSnapshot(const std::string& path,
                                      std::vector<std::string>* mode_notes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  FdCloser closer{fd};
  absl::StatusOr<SnapshotContents> snapshot = ReadSnapshotFile(fd, path);
  if (!snapshot.ok()) return snapshot.status();
  std::string note = TightenMode(fd, path);
  if (!note.empty()) mode_notes->push_back(std::move(note));

  generation_ = snapshot->generation;
  stats_.snapshot_entries_loaded = static_cast<int64_t>(snapshot->data.size());
  absl::MutexLock data_lock(&mu_);
  data_ = std::move(snapshot->data);
  return absl::OkStatus();
}

absl::Status LocalStore::RemoveStaleFiles() {
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return ErrnoError(errno, "opendir", dir_);
  std::vector<std::pair<std::string, uint64_t>> logs;
  errno = 0;
  while (struct dirent* entry = readdir(d)) {
    absl::string_view name = entry->d_name;
    if (!absl::ConsumePrefix(&name, kLogPrefix) || name.empty()) continue;
    bool digits = true;
    for (char c : name) digits = digits && absl::ascii_isdigit(c);
    uint64_t generation;
    if (digits && absl::SimpleAtoi(name, &generation)) {
      logs.emplace_back(entry->d_name, generation);
    }
  }
  const int error_number = errno;
  closedir(d);
  if (error_number != 0) return ErrnoError(error_number, "readdir", dir_);

  bool removed = false;
  for (const auto& [name, generation] : logs) {
    const std::string path = JoinPath(dir_, name);
    if (generation == generation_) continue;
    bool stale = generation < generation_;  // contained in the snapshot
    if (generation == generation_ + 1) {
      // Created by a compaction that crashed before its snapshot was renamed
      // into place; nothing is appended to it until then, so it is empty.
      struct stat st;
      if (stat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat", path);
      stale = st.st_size == 0;
    }
    if (!stale) {
      return absl::DataLossError(absl::StrCat(
          "log ", path, " is newer than the snapshot's generation ",
          generation_, "; refusing to open"));
    }
    if (absl::Status s = RemoveIfExists(path); !s.ok()) return s;
    removed = true;
  }
  return removed ? FsyncDir(dir_) : absl::OkStatus();
}

absl::Status LocalStore::OpenAndReplayLog(
    std::vector<std::string>* mode_notes) {
  const std::string path = LogPath(generation_);
  int fd = open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    fd = open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
              kFileMode);
    if (fd < 0) return ErrnoError(errno, "create", path);
    if (absl::Status s = FsyncDir(dir_); !s.ok()) {
      close(fd);
      return s;
    }
  }
  if (fd < 0) return ErrnoError(errno, "open", path);
  log_fd_ = fd;  // closed by the destructor from here on
  std::string note = TightenMode(fd, path);
  if (!note.empty()) mode_notes->push_back(std::move(note));

  absl::StatusOr<int64_t> file_size = FileSize(fd, path);
  if (!file_size.ok()) return file_size.status();
  int64_t offset = 0;
  while (true) {
    uint64_t record_bytes = 0;
    std::vector<StoreMutation> mutations;
    absl::StatusOr<RecordCheck> read = ReadRecordAt(
        fd, path, offset, *file_size, &record_bytes, &mutations);
    if (!read.ok()) return read.status();
    if (*read == RecordCheck::kEnd) break;
    if (*read == RecordCheck::kOk) {
      Apply(mutations);
      ++stats_.records_replayed;
      offset += static_cast<int64_t>(record_bytes);
      continue;
    }
    // The first bad record. Only a torn last write (a crash or short write
    // mid-append, never acknowledged) is cut off here; anything else is
    // damage to acknowledged data, left exactly as found for an explicit
    // repair.
    absl::StatusOr<std::string> tail =
        ReadAt(fd, path, offset, static_cast<size_t>(*file_size - offset));
    if (!tail.ok()) return tail.status();
    const LogDamage damage = AnalyzeLogDamage(*tail, offset);
    if (!damage.torn) return LogCorruptionError(path, damage);
    if (ftruncate(fd, offset) != 0) return ErrnoError(errno, "ftruncate", path);
    if (fdatasync(fd) != 0) return ErrnoError(errno, "fdatasync", path);
    stats_.bytes_truncated = *file_size - offset;
    std::fprintf(stderr,
                 "joule store: %s: torn last write (%s) at offset %lld; "
                 "dropped %lld trailing bytes, kept %lld records\n",
                 path.c_str(),
                 std::string(RecordCheckText(damage.problem)).c_str(),
                 static_cast<long long>(offset),
                 static_cast<long long>(stats_.bytes_truncated),
                 static_cast<long long>(stats_.records_replayed));
    break;
  }
  log_bytes_ = offset;
  return absl::OkStatus();
}

absl::Status LocalStore::Put(absl::string_view key, absl::string_view value) {
  if (absl::Status s = ValidateStoreKey(key); !s.ok()) return s;
  if (absl::Status s = ValidateStoreValue(value); !s.ok()) return s;
  return CommitValidated({StoreMutation{StoreMutation::Op::kPut,
                                        std::string(key), std::string(value)}});
}

absl::Status LocalStore::Delete(absl::string_view key) {
  if (absl::Status s = ValidateStoreKey(key); !s.ok()) return s;
  return CommitValidated(
      {StoreMutation{StoreMutation::Op::kDelete, std::string(key), ""}});
}

absl::Status LocalStore::Commit(const std::vector<StoreMutation>& mutations) {
  if (absl::Status s = ValidateStoreMutations(mutations); !s.ok()) return s;
  if (mutations.empty()) return absl::OkStatus();
  return CommitValidated(mutations);
}

absl::Status LocalStore::CommitValidated(
    const std::vector<StoreMutation>& mutations) {
  std::string record;
  {
    const std::string payload = EncodeMutations(mutations);
    record.reserve(kRecordHeaderBytes + payload.size());
    AppendRecord(&record, payload);
  }

  absl::MutexLock lock(&write_mu_);
  if (!write_error_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store in ", dir_, " refuses writes after an I/O error; reopen it: ",
        write_error_.ToString()));
  }
  const std::string path = LogPath(generation_);
  // One write() per record. After a failed or short write, or a failed
  // fdatasync, the log's contents are unknown, so stop writing.
  ssize_t written;
  do {
    written = write(log_fd_, record.data(), record.size());
  } while (written < 0 && errno == EINTR);
  if (written < 0) {
    write_error_ = ErrnoError(errno, "write", path);
    return write_error_;
  }
  if (static_cast<size_t>(written) != record.size()) {
    write_error_ =
        absl::DataLossError(absl::StrCat("short write to ", path, ": ", written,
                                         " of ", record.size(), " bytes"));
    return write_error_;
  }
  if (fdatasync(log_fd_) != 0) {
    write_error_ = ErrnoError(errno, "fdatasync", path);
    return write_error_;
  }
  log_bytes_ += static_cast<int64_t>(record.size());
  Apply(mutations);
  MaybeCompact();
  return absl::OkStatus();
}

void LocalStore::Apply(const std::vector<StoreMutation>& mutations) {
  absl::MutexLock lock(&mu_);
  for (const StoreMutation& m : mutations) {
    if (m.op == StoreMutation::Op::kPut) {
      data_.insert_or_assign(m.key, m.value);
    } else {
      data_.erase(m.key);
    }
  }
}

void LocalStore::MaybeCompact() {
  if (log_bytes_ <= compact_at_bytes_) return;
  if (absl::Status s = Compact(); s.ok()) {
    compact_at_bytes_ = options_.compact_log_bytes;
    ++stats_.compactions;
  } else {
    // The log is still valid; try again after it grows by another threshold.
    compact_at_bytes_ = log_bytes_ + options_.compact_log_bytes;
    ++stats_.compaction_failures;
    std::fprintf(stderr, "joule store: compaction in %s failed: %s\n",
                 dir_.c_str(), s.ToString().c_str());
  }
}

absl::Status LocalStore::Compact() {
  const uint64_t new_generation = generation_ + 1;
  const std::string tmp_path = JoinPath(dir_, kSnapshotTmpFile);
  const std::string snapshot_path = JoinPath(dir_, kSnapshotFile);
  const std::string new_log_path = LogPath(new_generation);
  // Before the rename, abandoning leaves the old snapshot and log in charge.
  auto abandon = [&](absl::Status status, int new_log_fd) {
    if (new_log_fd >= 0) close(new_log_fd);
    unlink(tmp_path.c_str());
    unlink(new_log_path.c_str());
    return status;
  };

  // (a) The snapshot, fsync'd.
  if (absl::Status s = WriteSnapshot(tmp_path, new_generation); !s.ok()) {
    return abandon(s, -1);
  }
  // (b) The empty log it refers to.
  const int new_log_fd =
      open(new_log_path.c_str(),
           O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (new_log_fd < 0) {
    return abandon(ErrnoError(errno, "create", new_log_path), -1);
  }
  if (fsync(new_log_fd) != 0) {
    return abandon(ErrnoError(errno, "fsync", new_log_path), new_log_fd);
  }
  // (c) Atomically replace the snapshot.
  if (rename(tmp_path.c_str(), snapshot_path.c_str()) != 0) {
    return abandon(ErrnoError(errno, "rename to", snapshot_path), new_log_fd);
  }
  // (d) Make the rename and the new log's entry durable. If this fails we
  // cannot tell which log a restart will read, so no log is safe to append to.
  if (absl::Status s = FsyncDir(dir_); !s.ok()) {
    close(new_log_fd);
    write_error_ = s;
    return s;
  }
  // (e) Switch over; the old log is now stale (Open would delete it too).
  const std::string old_log_path = LogPath(generation_);
  close(log_fd_);
  log_fd_ = new_log_fd;
  generation_ = new_generation;
  log_bytes_ = 0;
  if (unlink(old_log_path.c_str()) != 0) {
    std::fprintf(stderr, "joule store: unlink %s: %s (removed on next open)\n",
                 old_log_path.c_str(), std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::Status LocalStore::WriteSnapshot(const std::string& path,
                                       uint64_t generation) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (fd < 0) return ErrnoError(errno, "create", path);
  FdCloser closer{fd};

  // Readers may continue; writers are excluded by write_mu_, so the map does
  // not change while it is written out.
  absl::ReaderMutexLock lock(&mu_);
  std::string buffer;
  buffer.append(kSnapshotMagic, kMagicBytes);
  local_store_internal::AppendU32(&buffer, kSnapshotVersion);
  local_store_internal::AppendU64(&buffer, generation);
  local_store_internal::AppendU64(&buffer, data_.size());
  local_store_internal::AppendU32(&buffer,
                                  local_store_internal::Crc32(buffer));

  std::vector<StoreMutation> entry(1);
  for (const auto& [key, value] : data_) {
    entry[0].key = key;
    entry[0].value = value;
    AppendRecord(&buffer, EncodeMutations(entry));
    if (buffer.size() >= kSnapshotWriteChunkBytes) {
      if (absl::Status s = WriteFull(fd, path, buffer); !s.ok()) return s;
      buffer.clear();
    }
  }
  if (absl::Status s = WriteFull(fd, path, buffer); !s.ok()) return s;
  if (fsync(fd) != 0) return ErrnoError(errno, "fsync", path);
  return absl::OkStatus();
}

absl::StatusOr<std::string> LocalStore::Get(absl::string_view key) const {
  if (absl::Status s = ValidateStoreKey(key); !s.ok()) return s;
  absl::ReaderMutexLock lock(&mu_);
  auto it = data_.find(std::string(key));
  if (it == data_.end()) {
    return absl::NotFoundError(absl::StrCat("key not found: ", key));
  }
  return it->second;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
LocalStore::List(absl::string_view prefix) const {
  if (absl::Status s = ValidateStorePrefix(prefix); !s.ok()) return s;
  std::vector<std::pair<std::string, std::string>> result;
  absl::ReaderMutexLock lock(&mu_);
  for (auto it = data_.lower_bound(std::string(prefix));
       it != data_.end() && absl::StartsWith(it->first, prefix); ++it) {
    result.emplace_back(it->first, it->second);
  }
  return result;
}

LocalStore::Stats LocalStore::GetStats() const {
  absl::MutexLock lock(&write_mu_);
  Stats stats = stats_;
  stats.log_bytes = log_bytes_;
  stats.log_generation = generation_;
  stats.log_path = LogPath(generation_);
  return stats;
}

}  // namespace joule
