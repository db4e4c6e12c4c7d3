#include "agent/cap_journal.h"

#include <fstream>
#include <string>

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

TEST(CapJournalTest, UnwritableDirectoryIsAnErrorAndRecordsNothing) {
  absl::StatusOr<CapJournal> journal = CapJournal::Open("/nonexistent-dir/journal");
  ASSERT_TRUE(journal.ok());
  EXPECT_FALSE(journal->Record("gpu/x/power_limit_w", 250).ok());
  EXPECT_TRUE(journal->entries().empty());
}

}  // namespace
}  // namespace joule
