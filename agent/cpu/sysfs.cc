#include "agent/cpu/sysfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace joule {
namespace {

constexpr size_t kMaxQuotedChars = 40;

// Maps an errno from open/read/write to the most specific status code.
absl::Status ErrnoStatus(int err, absl::string_view op,
                         const std::string& path) {
  const std::string message =
      absl::StrCat("cannot ", op, " ", path, ": ", strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENODEV:
    case ENXIO:
    case ENODATA:  // An attribute the driver lists but has no value for.
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the error (a sysfs store may fail only at close
  // on some filesystems).
  int Close() {
    const int rc = close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Reads up to `limit` + 1 bytes, so a caller can tell "exactly limit" from
// "more than limit".
absl::StatusOr<std::string> ReadUpTo(const std::string& path, size_t limit) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  std::string contents;
  char buffer[1024];
  while (contents.size() <= limit) {
    const size_t want = std::min(sizeof(buffer), limit + 1 - contents.size());
    const ssize_t n = read(fd.get(), buffer, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", path);
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  return contents;
}

absl::StatusOr<std::string> ReadRaw(const std::string& path) {
  absl::StatusOr<std::string> contents = ReadUpTo(path, kMaxSysfsFileBytes);
  if (!contents.ok()) return contents.status();
  if (contents->size() > kMaxSysfsFileBytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": more than ", kMaxSysfsFileBytes,
        " bytes; not a single-value attribute: ", QuoteForError(*contents)));
  }
  return contents;
}

// Parses the digits of `digits` (already stripped, without sign) into
// `*value`; false on empty, a non-digit, or overflow past `limit`.
bool ParseDigits(absl::string_view digits, uint64_t limit, uint64_t* value,
                 bool* overflow) {
  *overflow = false;
  if (digits.empty()) return false;
  uint64_t result = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (result > (limit - digit) / 10) {
      *overflow = true;
      return false;
    }
    result = result * 10 + digit;
  }
  *value = result;
  return true;
}

absl::Status Malformed(absl::string_view source, absl::string_view what,
                       absl::string_view text) {
  return absl::DataLossError(
      absl::StrCat(source, ": ", what, ": ", QuoteForError(text)));
}

}  // namespace

std::string QuoteForError(absl::string_view text) {
  if (text.size() <= kMaxQuotedChars) {
    return absl::StrCat("\"", absl::CHexEscape(text), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxQuotedChars)),
                      "\"... (", text.size(), " bytes)");
}

absl::StatusOr<uint64_t> ParseUint64(absl::string_view text,
                                     absl::string_view source) {
  const absl::string_view stripped = absl::StripAsciiWhitespace(text);
  if (stripped.empty())
    return Malformed(source, "empty, expected a number", text);
  if (stripped[0] == '-') {
    return Malformed(source, "negative, expected an unsigned number", text);
  }
  uint64_t value = 0;
  bool overflow = false;
  if (!ParseDigits(stripped, std::numeric_limits<uint64_t>::max(), &value,
                   &overflow)) {
    return Malformed(
        source,
        overflow ? "does not fit in 64 bits" : "not an unsigned decimal number",
        text);
  }
  return value;
}

absl::StatusOr<int64_t> ParseInt64(absl::string_view text,
                                   absl::string_view source) {
  absl::string_view stripped = absl::StripAsciiWhitespace(text);
  if (stripped.empty())
    return Malformed(source, "empty, expected a number", text);
  const bool negative = stripped[0] == '-';
  if (negative) stripped.remove_prefix(1);
  // |INT64_MIN| = INT64_MAX + 1.
  const uint64_t limit =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) +
      (negative ? 1 : 0);
  uint64_t magnitude = 0;
  bool overflow = false;
  if (!ParseDigits(stripped, limit, &magnitude, &overflow)) {
    return Malformed(source,
                     overflow ? "does not fit in a signed 64-bit number"
                              : "not a decimal number",
                     text);
  }
  if (!negative) return static_cast<int64_t>(magnitude);
  if (magnitude == limit) return std::numeric_limits<int64_t>::min();
  return -static_cast<int64_t>(magnitude);
}

absl::StatusOr<std::string> ReadFileHead(const std::string& path,
                                         size_t max_bytes) {
  absl::StatusOr<std::string> contents = ReadUpTo(path, max_bytes);
  if (!contents.ok()) return contents.status();
  if (contents->size() > max_bytes) contents->resize(max_bytes);
  return contents;
}

absl::StatusOr<std::string> ReadStringFile(const std::string& path) {
  absl::StatusOr<std::string> raw = ReadRaw(path);
  if (!raw.ok()) return raw.status();
  return std::string(absl::StripAsciiWhitespace(*raw));
}

absl::StatusOr<uint64_t> ReadUint64File(const std::string& path) {
  absl::StatusOr<std::string> raw = ReadRaw(path);
  if (!raw.ok()) return raw.status();
  return ParseUint64(*raw, path);
}

absl::StatusOr<int64_t> ReadInt64File(const std::string& path) {
  absl::StatusOr<std::string> raw = ReadRaw(path);
  if (!raw.ok()) return raw.status();
  return ParseInt64(*raw, path);
}

absl::Status WriteUint64File(const std::string& path, uint64_t value) {
  // No O_CREAT: sysfs attributes exist or the write is wrong. O_TRUNC is
  // ignored by sysfs and makes plain files (fixtures) behave the same.
  Fd fd(open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open for writing", path);
  const std::string text = absl::StrCat(value, "\n");
  ssize_t n;
  do {
    n = write(fd.get(), text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    if (err == EINVAL || err == ERANGE) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write ", value, " to ", path,
                       ": rejected by the kernel: ", strerror(err)));
    }
    return ErrnoStatus(err, absl::StrCat("write ", value, " to"), path);
  }
  if (static_cast<size_t>(n) != text.size()) {
    return absl::UnavailableError(absl::StrCat("short write of ", value, " to ",
                                               path, ": ", n, " of ",
                                               text.size(), " bytes"));
  }
  if (fd.Close() != 0) {
    return ErrnoStatus(
        errno, absl::StrCat("close after writing ", value, " to"), path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, "list directory", path);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  const int err = errno;
  closedir(dir);
  if (err != 0) return ErrnoStatus(err, "list directory", path);
  std::sort(names.begin(), names.end());
  return names;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

bool ParseIndex(absl::string_view text, int* index) {
  uint64_t value = 0;
  bool overflow = false;
  if (!ParseDigits(text, static_cast<uint64_t>(std::numeric_limits<int>::max()),
                   &value, &overflow)) {
    return false;
  }
  *index = static_cast<int>(value);
  return true;
}

absl::Status SysfsOriginals::Write(const std::string& path, uint64_t value) {
  const bool first_change = originals_.count(path) == 0;
  if (first_change) {
    absl::StatusOr<uint64_t> original = ReadUint64File(path);
    if (!original.ok()) {
      return absl::Status(original.status().code(),
                          absl::StrCat("not changing a limit whose original cannot be read "
                                       "back for restoring: ",
                                       original.status().message()));
    }
    originals_[path] = *original;
  }
  absl::Status status = WriteUint64File(path, value);
  if (!status.ok() && first_change) originals_.erase(path);
  return status;
}

absl::Status SysfsOriginals::Restore(absl::string_view what) {
  std::vector<std::string> failures;
  for (auto it = originals_.begin(); it != originals_.end();) {
    absl::Status status = WriteUint64File(it->first, it->second);
    if (status.ok()) {
      it = originals_.erase(it);
    } else {
      failures.push_back(std::string(status.message()));
      ++it;
    }
  }
  if (failures.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("could not restore ", failures.size(), " ",
                                             what, ": ", absl::StrJoin(failures, "; ")));
}

}  // namespace joule
