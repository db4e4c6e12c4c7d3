#include "scheduler/store/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace joule {
namespace {

constexpr char kLockFile[] = "LOCK";
constexpr char kSnapshotFile[] = "snapshot";
constexpr char kSnapshotTmpFile[] = "snapshot.tmp";
constexpr char kLogPrefix[] = "wal.";

constexpr char kSnapshotMagic[] = "JOULESNP";  // 8 bytes, no terminator
constexpr size_t kMagicBytes = 8;
constexpr uint32_t kSnapshotVersion = 1;
// magic, version, generation, entry count, crc of the preceding bytes.
constexpr size_t kSnapshotHeaderBytes = kMagicBytes + 4 + 8 + 8 + 4;

constexpr size_t kRecordHeaderBytes = 8;  // u32 length, u32 crc
// A valid payload is at most this long: kMaxCommitBytes of keys and values
// plus at most 9 bytes of framing per mutation (each has a key of >= 1 byte)
// plus the count. Anything longer is corruption, not a real record.
constexpr uint64_t kMaxRecordPayloadBytes = 4 + 10 * uint64_t{kMaxCommitBytes};

constexpr uint8_t kOpPut = 1;
constexpr uint8_t kOpDelete = 2;

constexpr size_t kSnapshotWriteChunkBytes = 1 << 20;

absl::Status ErrnoError(int error_number, absl::string_view op,
                        absl::string_view path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(op, " ", path));
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

uint32_t Crc32(absl::string_view data) {
  return static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

void AppendU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void AppendU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t LoadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

uint64_t LoadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

std::string EncodeMutations(const std::vector<StoreMutation>& mutations) {
  size_t size = 4;
  for (const StoreMutation& m : mutations) {
    size += 1 + 4 + m.key.size() + 4 + m.value.size();
  }
  std::string payload;
  payload.reserve(size);
  AppendU32(&payload, static_cast<uint32_t>(mutations.size()));
  for (const StoreMutation& m : mutations) {
    const bool put = m.op == StoreMutation::Op::kPut;
    payload.push_back(static_cast<char>(put ? kOpPut : kOpDelete));
    AppendU32(&payload, static_cast<uint32_t>(m.key.size()));
    payload.append(m.key);
    if (put) {
      AppendU32(&payload, static_cast<uint32_t>(m.value.size()));
      payload.append(m.value);
    }
  }
  return payload;
}

// Reads the mutations back; fails if the payload is not exactly an encoding.
absl::StatusOr<std::vector<StoreMutation>> DecodeMutations(
    absl::string_view payload) {
  auto take_u32 = [&payload](uint32_t* v) {
    if (payload.size() < 4) return false;
    *v = LoadU32(payload.data());
    payload.remove_prefix(4);
    return true;
  };
  auto take_bytes = [&payload, &take_u32](std::string* out) {
    uint32_t size;
    if (!take_u32(&size) || payload.size() < size) return false;
    out->assign(payload.data(), size);
    payload.remove_prefix(size);
    return true;
  };
  uint32_t count;
  // Every mutation takes at least 5 bytes, which bounds `count` before we
  // reserve memory for it.
  if (!take_u32(&count) || count > payload.size() / 5) {
    return absl::DataLossError("bad mutation count");
  }
  std::vector<StoreMutation> mutations(count);
  for (StoreMutation& m : mutations) {
    if (payload.empty()) return absl::DataLossError("truncated mutation");
    const uint8_t op = static_cast<uint8_t>(payload[0]);
    payload.remove_prefix(1);
    if (op != kOpPut && op != kOpDelete) {
      return absl::DataLossError(absl::StrCat("unknown mutation op ", op));
    }
    m.op = op == kOpPut ? StoreMutation::Op::kPut : StoreMutation::Op::kDelete;
    if (!take_bytes(&m.key) || (op == kOpPut && !take_bytes(&m.value))) {
      return absl::DataLossError("truncated mutation");
    }
  }
  if (!payload.empty()) {
    return absl::DataLossError("trailing bytes after mutations");
  }
  return mutations;
}

void AppendRecord(std::string* out, absl::string_view payload) {
  AppendU32(out, static_cast<uint32_t>(payload.size()));
  AppendU32(out, Crc32(payload));
  out->append(payload.data(), payload.size());
}

// Reads up to `size` bytes; fewer only at end of file.
absl::StatusOr<size_t> ReadFull(int fd, const std::string& path, char* buf,
                                size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = read(fd, buf + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::Status WriteFull(int fd, const std::string& path,
                       absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open directory", dir);
  absl::Status status;
  if (fsync(fd) != 0) status = ErrnoError(errno, "fsync directory", dir);
  close(fd);
  return status;
}

// mkdir -p, fsyncing the parent of every directory it creates so that the new
// entries survive a crash.
absl::Status MakeDirs(const std::string& dir) {
  for (size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    const std::string prefix = dir.substr(0, end);
    if (mkdir(prefix.c_str(), 0755) == 0) {
      if (absl::Status s = FsyncDir(ParentDir(prefix)); !s.ok()) return s;
    } else if (errno == EEXIST) {
      struct stat st;
      if (stat(prefix.c_str(), &st) != 0)
        return ErrnoError(errno, "stat", prefix);
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat(prefix, " exists and is not a directory"));
      }
    } else {
      return ErrnoError(errno, "mkdir", prefix);
    }
    if (end == std::string::npos) return absl::OkStatus();
  }
}

absl::Status RemoveIfExists(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(errno, "unlink", path);
  }
  return absl::OkStatus();
}

enum class RecordRead { kRecord, kEnd, kBad };

// Reads the record starting at `offset`, which must be the fd's position, in
// a file of `file_size` bytes. kEnd: clean end of file. kBad: a torn or
// corrupt record, with the reason in `problem`.
absl::StatusOr<RecordRead> ReadRecord(int fd, const std::string& path,
                                      int64_t offset, int64_t file_size,
                                      std::string* payload,
                                      std::string* problem) {
  const uint64_t remaining = static_cast<uint64_t>(file_size - offset);
  if (remaining == 0) return RecordRead::kEnd;
  char header[kRecordHeaderBytes];
  if (remaining < sizeof(header)) {
    *problem = "short record header";
    return RecordRead::kBad;
  }
  absl::StatusOr<size_t> got = ReadFull(fd, path, header, sizeof(header));
  if (!got.ok()) return got.status();
  if (*got < sizeof(header)) {
    *problem = "short record header";
    return RecordRead::kBad;
  }
  const uint32_t length = LoadU32(header);
  const uint32_t crc = LoadU32(header + 4);
  if (length > kMaxRecordPayloadBytes) {
    *problem = absl::StrCat("implausible record length ", length);
    return RecordRead::kBad;
  }
  // Checked before allocating, so garbage lengths cost nothing.
  if (length > remaining - kRecordHeaderBytes) {
    *problem = "short record payload";
    return RecordRead::kBad;
  }
  payload->resize(length);
  got = ReadFull(fd, path, payload->data(), length);
  if (!got.ok()) return got.status();
  if (*got < length) {
    *problem = "short record payload";
    return RecordRead::kBad;
  }
  if (Crc32(*payload) != crc) {
    *problem = "record crc mismatch";
    return RecordRead::kBad;
  }
  return RecordRead::kRecord;
}

absl::StatusOr<int64_t> FileSize(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat", path);
  return static_cast<int64_t>(st.st_size);
}

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
  if (absl::Status s = MakeDirs(clean_dir); !s.ok()) return s;

  const std::string lock_path = JoinPath(clean_dir, kLockFile);
  const int lock_fd =
      open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return ErrnoError(errno, "open", lock_path);
  // flock() locks belong to the open file description, so this also fails for
  // a second Open of the same directory within this process.
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int error_number = errno;
    close(lock_fd);
    if (error_number == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", clean_dir, " is in use by another process (",
          lock_path, " is locked)"));
    }
    return ErrnoError(error_number, "flock", lock_path);
  }

  std::unique_ptr<LocalStore> store(
      new LocalStore(std::move(clean_dir), options, lock_fd));
  if (absl::Status s = store->Recover(); !s.ok()) return s;
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
  return JoinPath(dir_, absl::StrCat(kLogPrefix, generation));
}

absl::Status LocalStore::Recover() {
  absl::MutexLock lock(&write_mu_);
  // A leftover snapshot.tmp is an unfinished compaction: never renamed into
  // place, so the current snapshot and log do not depend on it.
  if (absl::Status s = RemoveIfExists(JoinPath(dir_, kSnapshotTmpFile));
      !s.ok()) {
    return s;
  }
  const std::string snapshot_path = JoinPath(dir_, kSnapshotFile);
  if (access(snapshot_path.c_str(), F_OK) == 0) {
    if (absl::Status s = LoadSnapshot(snapshot_path); !s.ok()) return s;
  } else if (errno != ENOENT) {
    return ErrnoError(errno, "access", snapshot_path);
  }
  if (absl::Status s = RemoveStaleFiles(); !s.ok()) return s;
  if (absl::Status s = OpenAndReplayLog(); !s.ok()) return s;
  compact_at_bytes_ = options_.compact_log_bytes;
  return absl::OkStatus();
}

absl::Status LocalStore::LoadSnapshot(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  // The snapshot was fsync'd before being renamed into place, so any damage
  // here is real data loss, not a torn write.
  auto corrupt = [&path](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("corrupt snapshot ", path, ": ", what));
  };

  absl::StatusOr<int64_t> file_size = FileSize(fd, path);
  if (!file_size.ok()) return file_size.status();
  char header[kSnapshotHeaderBytes];
  absl::StatusOr<size_t> got = ReadFull(fd, path, header, sizeof(header));
  if (!got.ok()) return got.status();
  if (*got < sizeof(header)) return corrupt("short header");
  if (std::memcmp(header, kSnapshotMagic, kMagicBytes) != 0) {
    return corrupt("bad magic");
  }
  const char* p = header + kMagicBytes;
  const uint32_t version = LoadU32(p);
  const uint64_t generation = LoadU64(p + 4);
  const uint64_t entry_count = LoadU64(p + 12);
  const uint32_t header_crc = LoadU32(p + 20);
  if (Crc32(absl::string_view(header, kSnapshotHeaderBytes - 4)) !=
      header_crc) {
    return corrupt("header crc mismatch");
  }
  if (version != kSnapshotVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", path, " has unsupported version ", version));
  }

  std::map<std::string, std::string> data;
  int64_t offset = kSnapshotHeaderBytes;
  std::string payload;
  std::string problem;
  for (uint64_t i = 0;; ++i) {
    absl::StatusOr<RecordRead> read =
        ReadRecord(fd, path, offset, *file_size, &payload, &problem);
    if (!read.ok()) return read.status();
    if (*read == RecordRead::kBad) return corrupt(problem);
    if (*read == RecordRead::kEnd) {
      if (i != entry_count) {
        return corrupt(
            absl::StrCat("has ", i, " entries, header says ", entry_count));
      }
      break;
    }
    offset += kRecordHeaderBytes + payload.size();
    absl::StatusOr<std::vector<StoreMutation>> mutations =
        DecodeMutations(payload);
    if (!mutations.ok()) return corrupt(mutations.status().message());
    if (mutations->size() != 1 ||
        (*mutations)[0].op != StoreMutation::Op::kPut) {
      return corrupt("entry is not a single put");
    }
    data.insert_or_assign(std::move((*mutations)[0].key),
                          std::move((*mutations)[0].value));
  }

  generation_ = generation;
  stats_.snapshot_entries_loaded = static_cast<int64_t>(data.size());
  absl::MutexLock data_lock(&mu_);
  data_ = std::move(data);
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

absl::Status LocalStore::OpenAndReplayLog() {
  const std::string path = LogPath(generation_);
  int fd = open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    fd = open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
              0644);
    if (fd < 0) return ErrnoError(errno, "create", path);
    if (absl::Status s = FsyncDir(dir_); !s.ok()) {
      close(fd);
      return s;
    }
  }
  if (fd < 0) return ErrnoError(errno, "open", path);
  log_fd_ = fd;  // closed by the destructor from here on

  absl::StatusOr<int64_t> file_size = FileSize(fd, path);
  if (!file_size.ok()) return file_size.status();
  int64_t offset = 0;
  std::string payload;
  std::string problem;
  while (true) {
    absl::StatusOr<RecordRead> read =
        ReadRecord(fd, path, offset, *file_size, &payload, &problem);
    if (!read.ok()) return read.status();
    if (*read == RecordRead::kEnd) break;
    absl::StatusOr<std::vector<StoreMutation>> mutations;
    if (*read == RecordRead::kRecord) {
      mutations = DecodeMutations(payload);
      if (!mutations.ok()) problem = std::string(mutations.status().message());
    }
    if (*read == RecordRead::kBad || !mutations.ok()) {
      // A crash mid-append leaves a torn last record; drop it and anything
      // after it so that new records are appended to a clean log.
      if (ftruncate(fd, offset) != 0)
        return ErrnoError(errno, "ftruncate", path);
      if (fdatasync(fd) != 0) return ErrnoError(errno, "fdatasync", path);
      stats_.bytes_truncated = *file_size - offset;
      std::fprintf(stderr,
                   "joule store: %s: %s at offset %lld; dropped %lld trailing "
                   "bytes, kept %lld records\n",
                   path.c_str(), problem.c_str(),
                   static_cast<long long>(offset),
                   static_cast<long long>(stats_.bytes_truncated),
                   static_cast<long long>(stats_.records_replayed));
      break;
    }
    Apply(*mutations);
    ++stats_.records_replayed;
    offset += kRecordHeaderBytes + payload.size();
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
           O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "create", path);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};

  // Readers may continue; writers are excluded by write_mu_, so the map does
  // not change while it is written out.
  absl::ReaderMutexLock lock(&mu_);
  std::string buffer;
  buffer.append(kSnapshotMagic, kMagicBytes);
  AppendU32(&buffer, kSnapshotVersion);
  AppendU64(&buffer, generation);
  AppendU64(&buffer, data_.size());
  AppendU32(&buffer, Crc32(buffer));

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
