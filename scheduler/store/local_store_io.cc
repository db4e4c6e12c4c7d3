#include "scheduler/store/local_store_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace joule {
namespace local_store_internal {
namespace {

// Sectors are written whole; unwritten ones read back as zeros.
constexpr int64_t kSectorBytes = 512;
// At zlib's crc32 speed, about a second of searching for intact records
// after a bad one.
constexpr uint64_t kMaxResyncBytes = uint64_t{1} << 30;

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Whether `payload`, cut short, could be the start of the payload of a
// record whose length field says `length`: each field seen so far is
// valid, and the mutations it announces are not all complete before
// `length` (a complete encoding followed by more payload is never valid).
bool IsEncodingPrefix(absl::string_view payload, uint64_t length) {
  size_t pos = 0;
  // Takes a u32 field; false when the bytes run out.
  auto take_u32 = [&payload, &pos](uint32_t* v) {
    if (payload.size() - pos < 4) return false;
    *v = LoadU32(payload.data() + pos);
    pos += 4;
    return true;
  };
  uint32_t count;
  if (!take_u32(&count)) return true;
  if (count == 0 || count > length / 5) return false;
  for (uint32_t i = 0; i < count; ++i) {
    if (pos >= payload.size()) return true;
    const uint8_t op = static_cast<uint8_t>(payload[pos++]);
    if (op != kOpPut && op != kOpDelete) return false;
    uint32_t key_bytes;
    if (!take_u32(&key_bytes)) return true;
    if (key_bytes == 0 || key_bytes > kMaxKeyBytes) return false;
    if (pos + key_bytes > length) return false;
    if (payload.size() - pos < key_bytes) return true;
    pos += key_bytes;
    if (op == kOpPut) {
      uint32_t value_bytes;
      if (!take_u32(&value_bytes)) return true;
      if (value_bytes > kMaxValueBytes) return false;
      if (pos + value_bytes > length) return false;
      if (payload.size() - pos < value_bytes) return true;
      pos += value_bytes;
    }
  }
  return false;  // complete before `length`
}

// Cheap tests a record start must pass before its crc is worth computing
// while resynchronizing: a sane header that fits, one or more mutations,
// and a first mutation that starts like one.
bool MayStartRecord(absl::string_view bytes, size_t offset) {
  const size_t remaining = bytes.size() - offset;
  if (remaining < kRecordHeaderBytes + 9) return false;
  const char* p = bytes.data() + offset;
  const uint64_t length = LoadU32(p);
  if (length < 9 || length > remaining - kRecordHeaderBytes) return false;
  const uint32_t count = LoadU32(p + kRecordHeaderBytes);
  const uint8_t op = static_cast<uint8_t>(p[kRecordHeaderBytes + 4]);
  const uint32_t key_bytes = LoadU32(p + kRecordHeaderBytes + 5);
  return count >= 1 && count <= length / 5 &&
         (op == kOpPut || op == kOpDelete) && key_bytes >= 1 &&
         key_bytes <= kMaxKeyBytes;
}

// How many bytes of `tail` were written, counting a run of zeros at the end
// as unwritten when it covers everything from the tail's start or from a
// sector boundary on.
size_t WrittenBytes(absl::string_view tail, int64_t tail_offset) {
  const size_t last_nonzero = tail.find_last_not_of('\0');
  if (last_nonzero == absl::string_view::npos) return 0;
  const int64_t zeros_from = tail_offset + static_cast<int64_t>(last_nonzero) + 1;
  const int64_t boundary =
      (zeros_from + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  const int64_t end = tail_offset + static_cast<int64_t>(tail.size());
  return boundary < end ? static_cast<size_t>(boundary - tail_offset)
                        : tail.size();
}

// Whether `tail` (starting at a bad record, with no intact record after it)
// is what an interrupted append leaves: see AnalyzeLogDamage.
bool IsTornWrite(absl::string_view tail, int64_t tail_offset) {
  const absl::string_view written =
      tail.substr(0, WrittenBytes(tail, tail_offset));
  if (written.size() < kRecordHeaderBytes) return true;
  const uint64_t length = LoadU32(written.data());
  if (length > kMaxRecordPayloadBytes) return false;
  // A whole record was written and still fails: not a torn write.
  if (written.size() - kRecordHeaderBytes >= length) return false;
  return IsEncodingPrefix(written.substr(kRecordHeaderBytes), length);
}

}  // namespace

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

absl::string_view RecordCheckText(RecordCheck check) {
  switch (check) {
    case RecordCheck::kOk:
      return "intact record";
    case RecordCheck::kEnd:
      return "end of file";
    case RecordCheck::kShortHeader:
      return "short record header";
    case RecordCheck::kImplausibleLength:
      return "implausible record length";
    case RecordCheck::kPastEnd:
      return "record runs past the end of the file";
    case RecordCheck::kCrcMismatch:
      return "record crc mismatch";
    case RecordCheck::kUndecodable:
      return "record crc matches but its payload does not decode";
  }
  return "unknown";
}

RecordCheck CheckRecordAt(absl::string_view bytes, size_t offset,
                          uint64_t* record_bytes,
                          std::vector<StoreMutation>* mutations) {
  const size_t remaining = bytes.size() - offset;
  if (remaining == 0) return RecordCheck::kEnd;
  if (remaining < kRecordHeaderBytes) return RecordCheck::kShortHeader;
  const char* p = bytes.data() + offset;
  const uint64_t length = LoadU32(p);
  if (length > kMaxRecordPayloadBytes) return RecordCheck::kImplausibleLength;
  if (length > remaining - kRecordHeaderBytes) return RecordCheck::kPastEnd;
  *record_bytes = kRecordHeaderBytes + length;
  const absl::string_view payload(p + kRecordHeaderBytes, length);
  if (Crc32(payload) != LoadU32(p + 4)) return RecordCheck::kCrcMismatch;
  absl::StatusOr<std::vector<StoreMutation>> decoded =
      DecodeMutations(payload);
  if (!decoded.ok()) return RecordCheck::kUndecodable;
  if (mutations != nullptr) *mutations = *std::move(decoded);
  return RecordCheck::kOk;
}

absl::StatusOr<RecordCheck> ReadRecordAt(int fd, const std::string& path,
                                         int64_t offset, int64_t file_size,
                                         uint64_t* record_bytes,
                                         std::vector<StoreMutation>* mutations) {
  const int64_t remaining = file_size - offset;
  absl::StatusOr<std::string> record = ReadAt(
      fd, path, offset,
      static_cast<size_t>(std::min<int64_t>(remaining, kRecordHeaderBytes)));
  if (!record.ok()) return record.status();
  if (record->size() == kRecordHeaderBytes) {
    // The payload is read only when the length is sane, so garbage lengths
    // cost nothing.
    const uint64_t length = LoadU32(record->data());
    if (length <= kMaxRecordPayloadBytes &&
        length <= static_cast<uint64_t>(remaining) - kRecordHeaderBytes) {
      absl::StatusOr<std::string> payload =
          ReadAt(fd, path, offset + kRecordHeaderBytes, length);
      if (!payload.ok()) return payload.status();
      record->append(*payload);
    }
  }
  return CheckRecordAt(*record, 0, record_bytes, mutations);
}

LogDamage AnalyzeLogDamage(absl::string_view tail, int64_t tail_offset) {
  LogDamage damage;
  damage.offset = tail_offset;
  damage.bytes_from_offset = static_cast<int64_t>(tail.size());
  uint64_t record_bytes = 0;
  damage.problem = CheckRecordAt(tail, 0, &record_bytes, nullptr);

  // 1. Intact records after it. A complete record with a sane header says
  // where the next one starts; otherwise (or if nothing intact is there)
  // search from the byte after its start.
  const bool length_usable = damage.problem == RecordCheck::kCrcMismatch ||
                             damage.problem == RecordCheck::kUndecodable;
  size_t pos = length_usable ? record_bytes : 1;
  bool searched_inside_bad_record = !length_usable;
  // Checksummed bytes of candidates that were not intact records: bounds
  // the search on pathological input.
  uint64_t wasted_bytes = 0;
  bool search_abandoned = false;
  while (pos < tail.size()) {
    uint64_t size = 0;
    if (CheckRecordAt(tail, pos, &size, nullptr) == RecordCheck::kOk) {
      damage.intact_after.emplace_back(tail_offset + pos, size);
      pos += size;
      continue;
    }
    damage.count_exact = false;
    wasted_bytes += size;
    if (wasted_bytes > kMaxResyncBytes) {
      search_abandoned = true;
      break;
    }
    if (!searched_inside_bad_record && damage.intact_after.empty()) {
      // The length field led nowhere; it may be what is damaged.
      searched_inside_bad_record = true;
      pos = 1;
    } else {
      ++pos;
    }
    while (pos < tail.size() && !MayStartRecord(tail, pos)) ++pos;
  }
  if (damage.problem == RecordCheck::kShortHeader ||
      (damage.problem == RecordCheck::kPastEnd &&
       damage.intact_after.empty())) {
    // Nothing can follow a record that claims the rest of the file.
    damage.count_exact = true;
  }

  // 2. Torn or corrupt. An abandoned search may have missed intact records.
  damage.torn = !search_abandoned && damage.intact_after.empty() &&
                IsTornWrite(tail, tail_offset);
  return damage;
}

absl::Status LogCorruptionError(const std::string& path,
                                const LogDamage& damage) {
  const size_t intact = damage.intact_after.size();
  const std::string following =
      intact == 0 && !damage.count_exact
          ? std::string("no intact record was found after it")
          : absl::StrCat(damage.count_exact ? "" : "at least ", intact,
                         " intact record", intact == 1 ? " follows" : "s follow",
                         " it");
  return absl::DataLossError(absl::StrCat(
      "corrupt record in ", path, " at offset ", damage.offset, " (",
      RecordCheckText(damage.problem), "); ", following, " in the remaining ",
      damage.bytes_from_offset,
      " bytes. Refusing to open; the file is left unchanged. A repair "
      "(joule-scheduler --repair-store) keeps a copy of it and cuts the log "
      "at offset ",
      damage.offset));
}

absl::StatusOr<SnapshotContents> ReadSnapshotFile(int fd,
                                                  const std::string& path) {
  // The snapshot was fsync'd before being renamed into place, so any damage
  // here is real data loss, not a torn write.
  auto corrupt = [&path](int64_t offset, absl::string_view what) {
    return absl::DataLossError(absl::StrCat("corrupt snapshot ", path,
                                            " at offset ", offset, ": ", what));
  };

  absl::StatusOr<int64_t> file_size = FileSize(fd, path);
  if (!file_size.ok()) return file_size.status();
  absl::StatusOr<std::string> header = ReadAt(fd, path, 0, kSnapshotHeaderBytes);
  if (!header.ok()) return header.status();
  if (header->size() < kSnapshotHeaderBytes) return corrupt(0, "short header");
  if (std::memcmp(header->data(), kSnapshotMagic, kMagicBytes) != 0) {
    return corrupt(0, "bad magic");
  }
  const char* p = header->data() + kMagicBytes;
  const uint32_t version = LoadU32(p);
  const uint64_t generation = LoadU64(p + 4);
  const uint64_t entry_count = LoadU64(p + 12);
  const uint32_t header_crc = LoadU32(p + 20);
  if (Crc32(absl::string_view(*header).substr(0, kSnapshotHeaderBytes - 4)) !=
      header_crc) {
    return corrupt(0, "header crc mismatch");
  }
  if (version != kSnapshotVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", path, " has unsupported version ", version));
  }

  SnapshotContents contents;
  contents.generation = generation;
  int64_t offset = kSnapshotHeaderBytes;
  for (uint64_t i = 0;; ++i) {
    uint64_t record_bytes = 0;
    std::vector<StoreMutation> mutations;
    absl::StatusOr<RecordCheck> read = ReadRecordAt(
        fd, path, offset, *file_size, &record_bytes, &mutations);
    if (!read.ok()) return read.status();
    const RecordCheck check = *read;
    if (check == RecordCheck::kEnd) {
      if (i != entry_count) {
        return corrupt(offset, absl::StrCat("has ", i, " entries, header says ",
                                            entry_count));
      }
      break;
    }
    if (check != RecordCheck::kOk) {
      return corrupt(offset, absl::StrCat("entry ", i, ": ",
                                          RecordCheckText(check)));
    }
    if (mutations.size() != 1 || mutations[0].op != StoreMutation::Op::kPut) {
      return corrupt(offset,
                     absl::StrCat("entry ", i, " is not a single put"));
    }
    contents.data.insert_or_assign(std::move(mutations[0].key),
                                   std::move(mutations[0].value));
    offset += static_cast<int64_t>(record_bytes);
  }
  return contents;
}

absl::Status ErrnoError(int error_number, absl::string_view op,
                        absl::string_view path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(op, " ", path));
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

std::string LogFileName(uint64_t generation) {
  return absl::StrCat(kLogPrefix, generation);
}

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

absl::StatusOr<std::string> ReadAt(int fd, const std::string& path,
                                   int64_t offset, size_t size) {
  std::string out(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, out.data() + done, size - done,
                            static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
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

absl::StatusOr<int64_t> FileSize(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat", path);
  return static_cast<int64_t>(st.st_size);
}

absl::Status RemoveIfExists(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(errno, "unlink", path);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& dir) {
  for (size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    const std::string prefix = dir.substr(0, end);
    if (mkdir(prefix.c_str(), kDirMode) == 0) {
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

std::string TightenMode(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::StrCat(BaseName(path), " (fstat: ", std::strerror(errno),
                        ")");
  }
  const mode_t mode = st.st_mode & 07777;
  if ((mode & 077) == 0) return "";
  const mode_t tight = mode & ~mode_t{077};
  if (fchmod(fd, tight) != 0) {
    return absl::StrFormat("%s is %04o and could not be changed (%s)",
                           BaseName(path), mode, std::strerror(errno));
  }
  return absl::StrFormat("%s %04o->%04o", BaseName(path), mode, tight);
}

absl::StatusOr<int> LockDataDir(const std::string& dir) {
  const std::string lock_path = JoinPath(dir, kLockFile);
  const int lock_fd =
      open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  if (lock_fd < 0) return ErrnoError(errno, "open", lock_path);
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int error_number = errno;
    close(lock_fd);
    if (error_number == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", dir, " is in use by another process (",
          lock_path, " is locked)"));
    }
    return ErrnoError(error_number, "flock", lock_path);
  }
  return lock_fd;
}

}  // namespace local_store_internal
}  // namespace joule
