// Shared helpers of the fuzz targets in this package: a byte reader for
// structured inputs, scratch directories for the targets that go through
// files, and a check that crashes the way libFuzzer recognizes.
//
// Not thread-safe; a fuzz target runs one input at a time.

#ifndef JOULE_FUZZ_FUZZ_SUPPORT_H_
#define JOULE_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace joule::fuzz {

// Consumes a fuzz input front to back. Reads past the end give zeros and
// empty strings, so every input is a valid sequence of reads.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - pos_; }
  uint8_t U8();
  // Little-endian.
  uint16_t U16();
  // Up to `n` bytes (fewer at the end of the input).
  absl::string_view Bytes(size_t n);
  // Everything not read yet.
  absl::string_view Rest();

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Silences the project's logging (JLOG) so that a fuzzer spends its time in
// the code under test, not in writing to stderr. JOULE_FUZZ_VERBOSE=1 in the
// environment keeps it, for looking at what a reproducer does.
void QuietLogs();

// A fresh, empty directory for one input's files under a per-process scratch
// root: $TEST_TMPDIR when set (bazel test), else /dev/shm (tmpfs: fsync is
// cheap) when writable, else /tmp. The scratch root is removed at exit.
std::string FreshDir();

// Writes `contents` to `path`, creating parent directories. Aborts on
// failure: a broken scratch directory is not a finding.
void WriteFileOrDie(const std::string& path, absl::string_view contents);

// Removes `path` and everything under it; missing is fine.
void RemoveTree(const std::string& path);

// Prints `message` with the location and aborts: an invariant of the code
// under test does not hold for this input.
[[noreturn]] void Fail(const char* file, int line, const std::string& message);

}  // namespace joule::fuzz

// Aborts, naming the condition, when `cond` is false.
#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) ::joule::fuzz::Fail(__FILE__, __LINE__, "check failed: " #cond); \
  } while (0)

// The same with a message built by the caller (only when it fails).
#define FUZZ_CHECK_MSG(cond, message)                              \
  do {                                                             \
    if (!(cond)) ::joule::fuzz::Fail(__FILE__, __LINE__, (message)); \
  } while (0)

#endif  // JOULE_FUZZ_FUZZ_SUPPORT_H_
