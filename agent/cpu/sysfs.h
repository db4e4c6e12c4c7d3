#ifndef JOULE_AGENT_CPU_SYSFS_H_
#define JOULE_AGENT_CPU_SYSFS_H_

// Strict readers and writers for single-value sysfs and procfs attributes.
//
// sysfs contents are untrusted input: a file may be missing, unreadable,
// empty, or hold garbage (a driver bug, a fixture, a half-written value). Every
// function here either returns the exact value or an error that names the file
// and, for malformed contents, quotes (a truncated, escaped copy of) what was
// there. Nothing here crashes or returns a made-up number.
//
// Status codes:
//   NOT_FOUND          the file (or a directory on its path) does not exist,
//                      or reading it gives ENODATA (e.g. a RAPL constraint's
//                      max_power_uw that the hardware does not state)
//   PERMISSION_DENIED  EACCES/EPERM/EROFS (e.g. energy_uj as non-root)
//   UNAVAILABLE        any other read/write error (EIO, ENODATA, EISDIR, ...),
//                      with the errno text
//   DATA_LOSS          contents malformed: empty, not a number, negative where
//                      unsigned, trailing garbage, overflow, too large
//   INVALID_ARGUMENT   a write the kernel rejected (EINVAL, ERANGE)
//
// The format rule (Linux kernel docs, filesystems/sysfs.rst: "one value per
// file", written by the kernel with a trailing newline) is: optional ASCII
// whitespace around exactly one decimal number; no sign for unsigned values,
// an optional '-' for signed ones, no '+', no hex.
//
// Thread-compatible free functions; they hold no state.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// The largest file these readers accept; sysfs attributes are at most one page.
inline constexpr size_t kMaxSysfsFileBytes = 4096;

// Reads the whole file and strips leading and trailing ASCII whitespace.
// An empty result is returned as is (callers decide whether that is valid).
absl::StatusOr<std::string> ReadStringFile(const std::string& path);

// Reads at most the first `max_bytes` of a file, as is (for files such as
// /proc/stat whose first line is all a caller needs).
absl::StatusOr<std::string> ReadFileHead(const std::string& path,
                                         size_t max_bytes);

// Reads one unsigned decimal number.
absl::StatusOr<uint64_t> ReadUint64File(const std::string& path);

// Reads one signed decimal number (e.g. a temperature in millidegrees).
absl::StatusOr<int64_t> ReadInt64File(const std::string& path);

// Writes `value` in decimal followed by "\n" (what `echo` writes), as one
// write(2), the way sysfs attributes expect it.
absl::Status WriteUint64File(const std::string& path, uint64_t value);

// Parsers behind the readers, for contents already in memory; `source` names
// where the text came from in error messages.
absl::StatusOr<uint64_t> ParseUint64(absl::string_view text,
                                     absl::string_view source);
absl::StatusOr<int64_t> ParseInt64(absl::string_view text,
                                   absl::string_view source);

// `text` escaped and cut to a readable length, in double quotes, for error
// messages about untrusted contents.
std::string QuoteForError(absl::string_view text);

// The names in directory `path` (without "." and ".."), sorted. NOT_FOUND if
// the directory does not exist.
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path);

// Whether `path` exists (following symlinks, as sysfs class links need).
bool PathExists(const std::string& path);

// Parses a non-negative decimal index such as the "12" of "hwmon12"; false
// on anything else (empty, sign, non-digit, overflow of int).
bool ParseIndex(absl::string_view text, int* index);

// The original contents of the sysfs files a component changed, so that it
// can put them back: the first Write of a path saves what the file held.
// Not thread-safe.
class SysfsOriginals {
 public:
  // Saves `path`'s current value on its first change (refusing to change a
  // file whose original cannot be read back), then writes `value`.
  absl::Status Write(const std::string& path, uint64_t value);
  // Writes every saved value back; the ones that fail stay saved for a later
  // Restore and are named in the error, which starts with `what`.
  absl::Status Restore(absl::string_view what);
  bool empty() const { return originals_.empty(); }

 private:
  std::map<std::string, uint64_t> originals_;
};

}  // namespace joule

#endif  // JOULE_AGENT_CPU_SYSFS_H_
