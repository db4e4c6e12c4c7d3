#include "agent/cap_journal.h"

#include <sys/stat.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

std::string JournalPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name;
}

TEST(CapJournalTest, RecordsSurviveReopenAndForgetRemoves) {
  const std::string path = JournalPath("journal1");
  std::remove(path.c_str());
  {
    absl::StatusOr<CapJournal> journal = CapJournal::Open(path);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_TRUE(journal->entries().empty());
    ASSERT_TRUE(journal->Record("gpu/GPU-1/power_limit_w", 250).ok());
    // The first original wins: a second change does not overwrite it.
    ASSERT_TRUE(journal->Record("gpu/GPU-1/power_limit_w", 150).ok());
    ASSERT_TRUE(journal->Record("cpufreq/policy0/scaling_max_freq", 3600000).ok());
  }
  absl::StatusOr<CapJournal> reopened = CapJournal::Open(path);
  ASSERT_TRUE(reopened.ok());
  ASSERT_EQ(reopened->entries().size(), 2u);
  EXPECT_EQ(reopened->entries().at("gpu/GPU-1/power_limit_w"), 250);
  EXPECT_EQ(reopened->entries().at("cpufreq/policy0/scaling_max_freq"), 3600000);
  ASSERT_TRUE(reopened->Forget("gpu/GPU-1/power_limit_w").ok());
  ASSERT_TRUE(reopened->Forget("never/recorded").ok());
  absl::StatusOr<CapJournal> again = CapJournal::Open(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->entries().size(), 1u);
}

TEST(CapJournalTest, CorruptJournalIsDataLossNamingTheLine) {
  const std::string path = JournalPath("journal2");
  std::ofstream(path) << "gpu/a\t250\ngarbage line\n";
  absl::StatusOr<CapJournal> journal = CapJournal::Open(path);
  EXPECT_EQ(journal.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(journal.status().message().find("line 2"), std::string::npos);
}

TEST(CapJournalTest, NonFiniteValuesAreCorrupt) {
  const std::string path = JournalPath("journal-nan");
  std::ofstream(path) << "gpu/a\tnan\n";
  EXPECT_EQ(CapJournal::Open(path).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(path) << "gpu/a\tinf\n";
  EXPECT_EQ(CapJournal::Open(path).status().code(), absl::StatusCode::kDataLoss);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t Mode(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_mode & 0777 : 0;
}

TEST(CapJournalTest, OpenOrResetKeepsAJunkJournalAsideAndStartsANewOne) {
  const std::string dir = ::testing::TempDir() + "/reset";
  mkdir(dir.c_str(), 0700);
  const std::string path = dir + "/caps.journal";
  const std::string junk = "gpu/a\t250\n\x01\x02 junk a task wrote\n";
  std::ofstream(path) << junk;
  const absl::Time now = absl::FromUnixSeconds(1700000000);  // 2023-11-14 22:13:20 UTC
  std::optional<CapJournal::Reset> reset;
  CapJournal journal = CapJournal::OpenOrReset(path, now, &reset);
  ASSERT_TRUE(reset.has_value());
  EXPECT_NE(reset->error.find(path + " line 2"), std::string::npos) << reset->error;
  EXPECT_EQ(reset->kept_as, path + ".corrupt-20231114T221320Z");
  EXPECT_EQ(ReadAll(reset->kept_as), junk);
  EXPECT_TRUE(journal.entries().empty());
  // The new journal is on disk, empty, the agent's only, and works.
  EXPECT_EQ(ReadAll(path), "");
  EXPECT_EQ(Mode(path), 0600);
  ASSERT_TRUE(journal.Record("gpu/b/power_limit_w", 300).ok());
  absl::StatusOr<CapJournal> reopened = CapJournal::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->entries().at("gpu/b/power_limit_w"), 300);

  // A second junk journal in the same second is kept beside the first.
  std::ofstream(path) << "junk\n";
  CapJournal::OpenOrReset(path, now, &reset);
  ASSERT_TRUE(reset.has_value());
  EXPECT_EQ(reset->kept_as, path + ".corrupt-20231114T221320Z-1");
  EXPECT_EQ(ReadAll(reset->kept_as), "junk\n");
}

TEST(CapJournalTest, OpenOrResetLeavesAGoodJournalAloneButPrivate) {
  const std::string path = JournalPath("journal-good");
  std::ofstream(path) << "gpu/a\t250\n";
  chmod(path.c_str(), 0644);
  std::optional<CapJournal::Reset> reset = CapJournal::Reset{"stale", ""};
  CapJournal journal = CapJournal::OpenOrReset(path, absl::UnixEpoch(), &reset);
  EXPECT_FALSE(reset.has_value());
  EXPECT_EQ(journal.entries().at("gpu/a"), 250);
  EXPECT_EQ(Mode(path), 0600);
}

TEST(CapJournalTest, UnwritableDirectoryIsAnErrorAndRecordsNothing) {
  absl::StatusOr<CapJournal> journal = CapJournal::Open("/nonexistent-dir/journal");
  ASSERT_TRUE(journal.ok());
  EXPECT_FALSE(journal->Record("gpu/x/power_limit_w", 250).ok());
  EXPECT_TRUE(journal->entries().empty());
}

}  // namespace
}  // namespace joule
