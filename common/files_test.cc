#include "common/files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(ReadFileUpToTest, ReadsAWholeSmallFile) {
  const std::string path = TempDir() + "/small";
  std::ofstream(path) << "12 (sleep) S 1";
  std::string text = "stale";
  EXPECT_EQ(ReadFileUpTo(path, 1 << 20, &text), 0);
  EXPECT_EQ(text, "12 (sleep) S 1");
}

TEST(ReadFileUpToTest, StopsNearTheLimit) {
  const std::string path = TempDir() + "/big";
  std::ofstream(path) << std::string(100000, 'x');
  std::string text;
  EXPECT_EQ(ReadFileUpTo(path, 10000, &text), 0);
  EXPECT_GE(text.size(), 10000u);
  EXPECT_LT(text.size(), 10000u + 4096u);
}

TEST(ReadFileUpToTest, ProcfsFilesWhoseSizeIsZero) {
  std::string text;
  EXPECT_EQ(ReadFileUpTo("/proc/self/stat", 1 << 16, &text), 0);
  EXPECT_NE(text.find(") "), std::string::npos) << text;
}

TEST(ReadFileUpToTest, ErrorsAreErrnos) {
  std::string text = "stale";
  EXPECT_EQ(ReadFileUpTo(TempDir() + "/missing", 100, &text), ENOENT);
  EXPECT_EQ(text, "");
  EXPECT_EQ(ReadFileUpTo(TempDir(), 100, &text), EISDIR);
}

TEST(MakeDirectoriesTest, CreatesParentsAndAcceptsExisting) {
  const std::string path = TempDir() + "/a/b/c";
  ASSERT_TRUE(MakeDirectories(path).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(MakeDirectories(path).ok());
}

}  // namespace
}  // namespace joule
