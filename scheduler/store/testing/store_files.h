#ifndef JOULE_SCHEDULER_STORE_TESTING_STORE_FILES_H_
#define JOULE_SCHEDULER_STORE_TESTING_STORE_FILES_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <ctime>
#include <set>
#include <string>

namespace joule {
namespace store_testing {

// File helpers for tests of stores kept in local directories. Failures are
// reported as gtest failures of the calling test. Stateless; thread-safe.

// A new empty directory under TEST_TMPDIR (or /tmp).
std::string NewTempDir();
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);
bool FileExists(const std::string& path);
// Names in `dir`, without "." and "..".
std::set<std::string> DirEntries(const std::string& dir);
// Permission bits (07777).
mode_t FileMode(const std::string& path);
struct timespec ModificationTime(const std::string& path);

}  // namespace store_testing
}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_TESTING_STORE_FILES_H_
