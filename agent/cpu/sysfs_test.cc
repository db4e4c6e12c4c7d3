#include "agent/cpu/sysfs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/match.h"
#include "agent/cpu/fixture_tree.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

// Every malformed-contents case: the value as planted and the status code the
// readers must give, naming the file.
struct GarbageCase {
  const char* contents;
  const char* why;
};

constexpr GarbageCase kUnsignedGarbage[] = {
    {"", "empty"},
    {"\n", "empty"},
    {"abc", "not an unsigned decimal number"},
    {"-5", "negative"},
    {"-5\n", "negative"},
    {"1180591620717411303424", "does not fit in 64 bits"},  // 2^70
    {"18446744073709551616", "does not fit in 64 bits"},    // 2^64
    {"12abc", "not an unsigned decimal number"},
    {"12 34", "not an unsigned decimal number"},
    {"+12", "not an unsigned decimal number"},
    {"0x10", "not an unsigned decimal number"},
    {"1.5", "not an unsigned decimal number"},
    {"12\n\n34\n", "not an unsigned decimal number"},
};

TEST(ReadUint64FileTest, ReadsValuesWithAndWithoutNewline) {
  FixtureTree tree("sysfs_ok");
  tree.File("a", "123\n")
      .File("b", "456")
      .File("c", "  7 \n")
      .File("max", "18446744073709551615\n")
      .File("zero", "0\n");
  EXPECT_EQ(*ReadUint64File(tree.Path("a")), 123u);
  EXPECT_EQ(*ReadUint64File(tree.Path("b")), 456u);
  EXPECT_EQ(*ReadUint64File(tree.Path("c")), 7u);
  EXPECT_EQ(*ReadUint64File(tree.Path("max")),
            std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*ReadUint64File(tree.Path("zero")), 0u);
}

TEST(ReadUint64FileTest, GarbageIsDataLossNamingFileAndQuotingContents) {
  FixtureTree tree("sysfs_garbage");
  for (const GarbageCase& c : kUnsignedGarbage) {
    SCOPED_TRACE(c.contents);
    tree.File("value", c.contents);
    absl::StatusOr<uint64_t> value = ReadUint64File(tree.Path("value"));
    ASSERT_FALSE(value.ok());
    EXPECT_EQ(value.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(value.status().message(), tree.Path("value")))
        << value.status();
    EXPECT_TRUE(absl::StrContains(value.status().message(), c.why))
        << value.status();
  }
}

TEST(ReadUint64FileTest, QuotesTruncatedEscapedContents) {
  FixtureTree tree("sysfs_quote");
  tree.File("value", std::string(200, 'x') + "\x01");
  absl::StatusOr<uint64_t> value = ReadUint64File(tree.Path("value"));
  ASSERT_FALSE(value.ok());
  EXPECT_TRUE(absl::StrContains(value.status().message(), "(201 bytes)"))
      << value.status();
  EXPECT_LT(value.status().message().size(), 200 + tree.Path("value").size());
}

TEST(ReadUint64FileTest, MissingFileIsNotFound) {
  FixtureTree tree("sysfs_missing");
  absl::StatusOr<uint64_t> value = ReadUint64File(tree.Path("nope"));
  EXPECT_EQ(value.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(value.status().message(), tree.Path("nope")));
}

TEST(ReadUint64FileTest, DirectoryInsteadOfFileIsUnavailable) {
  FixtureTree tree("sysfs_dir");
  tree.MakeDirectory("value");
  absl::StatusOr<uint64_t> value = ReadUint64File(tree.Path("value"));
  EXPECT_EQ(value.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(value.status().message(), tree.Path("value")));
  EXPECT_TRUE(absl::StrContains(value.status().message(), "directory"))
      << value.status();
}

TEST(ReadUint64FileTest, UnreadableFileIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads mode-000 files";
  FixtureTree tree("sysfs_perm");
  tree.File("value", "1\n");
  ASSERT_EQ(chmod(tree.Path("value").c_str(), 0), 0);
  absl::StatusOr<uint64_t> value = ReadUint64File(tree.Path("value"));
  EXPECT_EQ(value.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(value.status().message(), tree.Path("value")));
}

TEST(ReadUint64FileTest, OversizedFileIsDataLoss) {
  FixtureTree tree("sysfs_big");
  tree.File("value", std::string(kMaxSysfsFileBytes + 1, '1'));
  EXPECT_EQ(ReadUint64File(tree.Path("value")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(ReadInt64FileTest, ReadsSignedValues) {
  FixtureTree tree("sysfs_int");
  tree.File("pos", "45000\n")
      .File("neg", "-12500\n")
      .File("min", "-9223372036854775808\n")
      .File("max", "9223372036854775807\n");
  EXPECT_EQ(*ReadInt64File(tree.Path("pos")), 45000);
  EXPECT_EQ(*ReadInt64File(tree.Path("neg")), -12500);
  EXPECT_EQ(*ReadInt64File(tree.Path("min")),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*ReadInt64File(tree.Path("max")),
            std::numeric_limits<int64_t>::max());
}

TEST(ReadInt64FileTest, GarbageIsDataLoss) {
  FixtureTree tree("sysfs_int_garbage");
  for (const char* contents :
       {"", "abc", "-", "--5", "12abc", "9223372036854775808",
        "-9223372036854775809", "1180591620717411303424", "+5", "4 5"}) {
    SCOPED_TRACE(contents);
    tree.File("value", contents);
    absl::StatusOr<int64_t> value = ReadInt64File(tree.Path("value"));
    ASSERT_FALSE(value.ok());
    EXPECT_EQ(value.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(
        absl::StrContains(value.status().message(), tree.Path("value")));
  }
}

TEST(ReadStringFileTest, TrimsWhitespace) {
  FixtureTree tree("sysfs_string");
  tree.File("name", "  package-0 \n");
  EXPECT_EQ(*ReadStringFile(tree.Path("name")), "package-0");
  EXPECT_EQ(ReadStringFile(tree.Path("none")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(WriteUint64FileTest, WritesDecimalWithNewline) {
  FixtureTree tree("sysfs_write");
  tree.File("limit", "125000000\n");
  ASSERT_TRUE(WriteUint64File(tree.Path("limit"), 90000000).ok());
  EXPECT_EQ(tree.Contents("limit"), "90000000\n");
  EXPECT_EQ(*ReadUint64File(tree.Path("limit")), 90000000u);
}

TEST(WriteUint64FileTest, MissingFileIsNotFoundAndNotCreated) {
  FixtureTree tree("sysfs_write_missing");
  absl::Status status = WriteUint64File(tree.Path("nope"), 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), tree.Path("nope")));
  EXPECT_EQ(tree.Contents("nope"), "<missing>");
}

TEST(WriteUint64FileTest, DirectoryIsAnError) {
  FixtureTree tree("sysfs_write_dir");
  tree.MakeDirectory("limit");
  absl::Status status = WriteUint64File(tree.Path("limit"), 1);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), tree.Path("limit")));
}

TEST(ListDirectoryTest, SortedNamesAndNotFound) {
  FixtureTree tree("sysfs_list");
  tree.File("d/b", "").File("d/a", "").MakeDirectory("d/c");
  absl::StatusOr<std::vector<std::string>> names =
      ListDirectory(tree.Path("d"));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ListDirectory(tree.Path("none")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseIndexTest, AcceptsOnlyPlainNonNegativeInts) {
  int index = -1;
  EXPECT_TRUE(ParseIndex("12", &index));
  EXPECT_EQ(index, 12);
  EXPECT_FALSE(ParseIndex("", &index));
  EXPECT_FALSE(ParseIndex("-1", &index));
  EXPECT_FALSE(ParseIndex("1a", &index));
  EXPECT_FALSE(ParseIndex("99999999999", &index));
}

}  // namespace
}  // namespace joule
