#include "common/basic_auth_file.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Line(const std::string& user, const std::string& password) {
  return absl::StrCat(user, " sha256:", Sha256Hex(password), "\n");
}

// Replaces the file the way a Secret update does: a new file renamed over.
void WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

class BasicAuthFileTest : public ::testing::Test {
 protected:
  std::string path_ = absl::StrCat(::testing::TempDir(), "/auth-", getpid());
  FakeClock clock_;
};

TEST_F(BasicAuthFileTest, ChecksUsersAndPasswords) {
  WriteFile(path_, absl::StrCat("# scrapers\n\n", Line("prometheus", "s3cret"),
                                "  ", Line("grafana", "other"), "\n"));
  absl::StatusOr<std::unique_ptr<BasicAuthFile>> file =
      BasicAuthFile::Load(path_, &clock_, absl::Seconds(2));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Check("prometheus", "s3cret"));
  EXPECT_TRUE((*file)->Check("grafana", "other"));
  EXPECT_FALSE((*file)->Check("prometheus", "other"));
  EXPECT_FALSE((*file)->Check("prometheus", ""));
  EXPECT_FALSE((*file)->Check("nobody", "s3cret"));
  EXPECT_FALSE((*file)->Check("", ""));
}

TEST_F(BasicAuthFileTest, ChangesTakeEffectAfterTheReloadInterval) {
  WriteFile(path_, Line("prometheus", "old"));
  absl::StatusOr<std::unique_ptr<BasicAuthFile>> file =
      BasicAuthFile::Load(path_, &clock_, absl::Seconds(2));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Check("prometheus", "old"));

  WriteFile(path_, Line("prometheus", "new"));
  // Not read again before the interval.
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE((*file)->Check("prometheus", "old"));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE((*file)->Check("prometheus", "new"));
  EXPECT_FALSE((*file)->Check("prometheus", "old"));

  // A version that does not parse, or no file: nobody gets in.
  WriteFile(path_, "prometheus plaintext\n");
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE((*file)->Check("prometheus", "new"));
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE((*file)->Check("prometheus", "new"));
  // Fixed: back in.
  WriteFile(path_, Line("prometheus", "new"));
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE((*file)->Check("prometheus", "new"));
}

TEST_F(BasicAuthFileTest, LoadNamesTheProblem) {
  EXPECT_EQ(BasicAuthFile::Load(path_ + "-missing", &clock_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(BasicAuthFile::Load(path_ + "-missing", &clock_).status().message(),
              HasSubstr(path_ + "-missing"));
  WriteFile(path_, absl::StrCat(Line("a", "x"), "b hunter2\n"));
  const absl::Status bad = BasicAuthFile::Load(path_, &clock_).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr(absl::StrCat(path_, ":2:")));
  // The line may hold a secret: it is not repeated.
  EXPECT_THAT(bad.message(), Not(HasSubstr("hunter2")));
}

struct ParseCase {
  std::string name;
  std::string text;
  // Empty: parses.
  std::string error;
};

TEST(BasicAuthFileParseTest, Lines) {
  const std::string hash = Sha256Hex("pw");
  const std::vector<ParseCase> cases = {
      {"empty", "", ""},
      {"comments", "# nothing\n   \n# more\n", ""},
      {"one", "u sha256:" + hash, ""},
      {"tab and crlf", "u\tsha256:" + hash + "\r\n", ""},
      {"upper-case hex", "u sha256:" + std::string(64, 'A'), ""},
      {"one field", "u\n", "f:1: want two fields"},
      {"three fields", "u sha256:" + hash + " x\n", "f:1: want two fields"},
      {"no scheme", "u " + hash, "f:1: the hash must start with sha256:"},
      {"other scheme", "u md5:" + hash, "must start with sha256:"},
      {"short hash", "u sha256:abc", "f:1: the hash must be 64 hex digits"},
      {"not hex", "u sha256:" + std::string(64, 'g'), "64 hex digits"},
      {"colon in user", "a:b sha256:" + hash, "without ':'"},
      {"control in user", "a\x01 sha256:" + hash, "printable"},
      {"twice", "u sha256:" + hash + "\n\nu sha256:" + hash, "f:3: user u appears twice"},
  };
  for (const ParseCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<BasicAuthFile::Credentials> parsed = BasicAuthFile::Parse(c.text, "f");
    if (c.error.empty()) {
      EXPECT_TRUE(parsed.ok()) << parsed.status();
    } else {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(parsed.status().message(), HasSubstr(c.error));
    }
  }
  absl::StatusOr<BasicAuthFile::Credentials> parsed =
      BasicAuthFile::Parse("u sha256:" + std::string(64, 'A'), "f");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->at("u"), std::string(64, 'a'));
}

}  // namespace
}  // namespace joule
