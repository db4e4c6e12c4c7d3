#include "scheduler/store/local_store.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/store/store_conformance.h"
#include "scheduler/store/testing/store_files.h"

namespace joule {
namespace {

using KeyValueMap = std::map<std::string, std::string>;

using store_testing::DirEntries;
using store_testing::FileExists;
using store_testing::FileMode;
using store_testing::ModificationTime;
using store_testing::NewTempDir;
using store_testing::ReadFile;
using store_testing::WriteFile;

std::unique_ptr<LocalStore> MustOpen(const std::string& dir,
                                     LocalStoreOptions options = {}) {
  absl::StatusOr<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(dir, options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

KeyValueMap Contents(const Store& store) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> all =
      store.List("");
  EXPECT_TRUE(all.ok()) << all.status();
  return all.ok() ? KeyValueMap(all->begin(), all->end()) : KeyValueMap{};
}

StoreMutation PutOp(std::string key, std::string value) {
  return StoreMutation{StoreMutation::Op::kPut, std::move(key),
                       std::move(value)};
}

LocalStoreOptions CompactAt(int64_t log_bytes) {
  LocalStoreOptions options;
  options.compact_log_bytes = log_bytes;
  return options;
}

// --- Conformance --------------------------------------------------------

absl::StatusOr<std::unique_ptr<Store>> MakeLocalStore() {
  absl::StatusOr<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(NewTempDir());
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

INSTANTIATE_TEST_SUITE_P(LocalStore, StoreConformanceTest,
                         ::testing::Values(StoreConformanceParam{
                             "LocalStore", MakeLocalStore}),
                         StoreConformanceParamName);

// --- LocalStore-specific --------------------------------------------------

class LocalStoreTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  const std::string dir_ = NewTempDir();
};

TEST_F(LocalStoreTest, OpenCreatesNestedDirectories) {
  std::unique_ptr<LocalStore> store = MustOpen(Path("a/b/c"));
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Put("k", "v").ok());
  EXPECT_TRUE(FileExists(Path("a/b/c/LOCK")));
}

TEST_F(LocalStoreTest, OpenRejectsBadOptions) {
  EXPECT_EQ(LocalStore::Open("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LocalStore::Open(dir_, CompactAt(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LocalStoreTest, ReopenKeepsEverything) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("jobs/1", "a").ok());
    ASSERT_TRUE(store->Put("jobs/2", "b").ok());
    ASSERT_TRUE(store->Put("jobs/1", "a2").ok());
    ASSERT_TRUE(store->Delete("jobs/2").ok());
    ASSERT_TRUE(
        store->Commit({PutOp("jobs/3", "c"), PutOp("idx/3", "x")}).ok());
    const LocalStore::Stats stats = store->GetStats();
    EXPECT_EQ(stats.log_bytes, ReadFile(stats.log_path).size());
  }
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store),
            (KeyValueMap{{"idx/3", "x"}, {"jobs/1", "a2"}, {"jobs/3", "c"}}));
  const LocalStore::Stats stats = store->GetStats();
  EXPECT_EQ(stats.records_replayed, 5);
  EXPECT_EQ(stats.bytes_truncated, 0);
}

TEST_F(LocalStoreTest, CompactionKeepsEverythingAndRemovesOldFiles) {
  KeyValueMap expected;
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_, CompactAt(512));
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 200; ++i) {
      const std::string key = absl::StrCat("jobs/", i % 37);
      if (i % 5 == 4) {
        ASSERT_TRUE(store->Delete(key).ok());
        expected.erase(key);
      } else {
        const std::string value = absl::StrCat("spec-", i);
        ASSERT_TRUE(store->Put(key, value).ok());
        expected[key] = value;
      }
    }
    const LocalStore::Stats stats = store->GetStats();
    EXPECT_GT(stats.compactions, 0);
    EXPECT_EQ(stats.compaction_failures, 0);
    EXPECT_EQ(stats.log_generation, stats.compactions);
    EXPECT_LE(stats.log_bytes, 512);
    EXPECT_EQ(
        DirEntries(dir_),
        (std::set<std::string>{"LOCK", "snapshot",
                               absl::StrCat("wal.", stats.log_generation)}));
  }
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), expected);
  EXPECT_GT(store->GetStats().snapshot_entries_loaded, 0);
}

// An interrupted append (torn write) after kGoodCommits commits, as a crash
// or a short write leaves it: never acknowledged, so Open cuts it off.
struct LogDamage {
  std::string name;
  // Whether one more commit is made first, for the damage to hit.
  bool extra_commit;
  // `log` is the whole file; `good_end` is its size after kGoodCommits.
  std::function<void(std::string* log, size_t good_end)> apply;
};

void PrintTo(const LogDamage& damage, std::ostream* os) { *os << damage.name; }

class LocalStoreTornLogTest : public LocalStoreTest,
                              public ::testing::WithParamInterface<LogDamage> {
};

constexpr int kGoodCommits = 5;

KeyValueMap CommitsUpTo(int n) {
  KeyValueMap expected;
  for (int i = 0; i < n; ++i) {
    expected[absl::StrCat("job/", i)] = absl::StrCat("spec-", i);
    expected[absl::StrCat("idx/", i)] = absl::StrCat(i);
  }
  return expected;
}

absl::Status CommitNumber(Store& store, int i) {
  return store.Commit({PutOp(absl::StrCat("job/", i), absl::StrCat("spec-", i)),
                       PutOp(absl::StrCat("idx/", i), absl::StrCat(i))});
}

TEST_P(LocalStoreTornLogTest, ReplayKeepsGoodCommitsAndTruncatesTheRest) {
  std::string log_path;
  size_t good_end = 0;
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kGoodCommits; ++i) {
      ASSERT_TRUE(CommitNumber(*store, i).ok());
    }
    good_end = store->GetStats().log_bytes;
    log_path = store->GetStats().log_path;
    if (GetParam().extra_commit) {
      ASSERT_TRUE(CommitNumber(*store, kGoodCommits).ok());
    }
  }
  std::string log = ReadFile(log_path);
  GetParam().apply(&log, good_end);
  ASSERT_GT(log.size(), good_end);
  WriteFile(log_path, log);

  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(Contents(*store), CommitsUpTo(kGoodCommits));
    const LocalStore::Stats stats = store->GetStats();
    EXPECT_EQ(stats.records_replayed, kGoodCommits);
    EXPECT_EQ(stats.bytes_truncated, log.size() - good_end);
    EXPECT_EQ(stats.log_bytes, good_end);
    EXPECT_EQ(ReadFile(log_path).size(), good_end);
    ASSERT_TRUE(store->Put("after", "reopen").ok());
  }
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  KeyValueMap expected = CommitsUpTo(kGoodCommits);
  expected["after"] = "reopen";
  EXPECT_EQ(Contents(*store), expected);
  EXPECT_EQ(store->GetStats().records_replayed, kGoodCommits + 1);
  EXPECT_EQ(store->GetStats().bytes_truncated, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, LocalStoreTornLogTest,
    ::testing::Values(
        LogDamage{
            "ShortHeaderGarbage", false,
            [](std::string* log, size_t) { log->append("\x07\x00\x01", 3); }},
        LogDamage{"ZeroFilledTail", false,
                  [](std::string* log, size_t) { log->append(4096, '\0'); }},
        LogDamage{"TruncatedHeader", true,
                  [](std::string* log, size_t good_end) {
                    log->resize(good_end + 5);
                  }},
        LogDamage{
            "TruncatedPayload", true,
            [](std::string* log, size_t) { log->resize(log->size() - 3); }},
        LogDamage{"TruncatedInsideKey", true,
                  [](std::string* log, size_t good_end) {
                    log->resize(good_end + 8 + 4 + 1 + 4 + 2);
                  }}),
    [](const ::testing::TestParamInfo<LogDamage>& info) {
      return info.param.name;
    });

// An extending write whose later sectors never reached the disk reads back
// as zeros from a sector boundary on: still a torn write.
TEST_F(LocalStoreTest, UnwrittenSectorsOfLastRecordAreATornWrite) {
  std::string log_path;
  size_t good_end = 0;
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kGoodCommits; ++i) {
      ASSERT_TRUE(CommitNumber(*store, i).ok());
    }
    good_end = store->GetStats().log_bytes;
    log_path = store->GetStats().log_path;
    ASSERT_TRUE(store->Put("big", std::string(3000, 'v')).ok());
  }
  std::string log = ReadFile(log_path);
  ASSERT_LT(good_end, 512);
  std::fill(log.begin() + 1024, log.end(), '\0');
  WriteFile(log_path, log);

  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), CommitsUpTo(kGoodCommits));
  EXPECT_EQ(store->GetStats().bytes_truncated, log.size() - good_end);
}

void SetU32(std::string* bytes, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*bytes)[at + i] = static_cast<char>(v >> (8 * i));
}

uint32_t GetU32(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= uint32_t{static_cast<uint8_t>(bytes[at + i])} << (8 * i);
  }
  return v;
}

// Damage to acknowledged records, anywhere: Open refuses with DATA_LOSS,
// names the file, the offset and what follows, and changes nothing.
struct LogCorruption {
  std::string name;
  // Commits made after the kGoodCommits; the damage hits the first of them
  // (which starts at `good_end`), or comes after them all when 0.
  int more_commits;
  std::function<void(std::string* log, size_t good_end)> apply;
  // What the error says follows the bad record.
  std::string follows;
};

void PrintTo(const LogCorruption& damage, std::ostream* os) {
  *os << damage.name;
}

class LocalStoreCorruptLogTest
    : public LocalStoreTest,
      public ::testing::WithParamInterface<LogCorruption> {};

TEST_P(LocalStoreCorruptLogTest, OpenRefusesAndLeavesTheFileUnchanged) {
  std::string log_path;
  size_t good_end = 0;
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kGoodCommits; ++i) {
      ASSERT_TRUE(CommitNumber(*store, i).ok());
    }
    good_end = store->GetStats().log_bytes;
    log_path = store->GetStats().log_path;
    for (int i = 0; i < GetParam().more_commits; ++i) {
      ASSERT_TRUE(CommitNumber(*store, kGoodCommits + i).ok());
    }
  }
  std::string log = ReadFile(log_path);
  GetParam().apply(&log, good_end);
  WriteFile(log_path, log);
  const struct timespec mtime = ModificationTime(log_path);

  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::unique_ptr<LocalStore>> store =
        LocalStore::Open(dir_);
    ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss)
        << store.status();
    const std::string message(store.status().message());
    EXPECT_THAT(message, ::testing::HasSubstr(log_path));
    EXPECT_THAT(message,
                ::testing::HasSubstr(absl::StrCat("at offset ", good_end, " ")));
    EXPECT_THAT(message, ::testing::HasSubstr(GetParam().follows));
    EXPECT_EQ(ReadFile(log_path), log);
    const struct timespec after = ModificationTime(log_path);
    EXPECT_EQ(after.tv_sec, mtime.tv_sec);
    EXPECT_EQ(after.tv_nsec, mtime.tv_nsec);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Damage, LocalStoreCorruptLogTest,
    ::testing::Values(
        LogCorruption{"MidLogFlippedPayloadByte", 4,
                      [](std::string* log, size_t good_end) {
                        (*log)[good_end + 20] ^= 0x01;
                      },
                      "; 3 intact records follow it"},
        LogCorruption{"MidLogFlippedCrcByte", 4,
                      [](std::string* log, size_t good_end) {
                        (*log)[good_end + 4] ^= 0x01;
                      },
                      "; 3 intact records follow it"},
        LogCorruption{"MidLogImplausibleLength", 4,
                      [](std::string* log, size_t good_end) {
                        (*log)[good_end + 3] ^= 0x80;
                      },
                      "; at least 3 intact records follow it"},
        LogCorruption{"MidLogLengthPastEnd", 4,
                      [](std::string* log, size_t good_end) {
                        SetU32(log, good_end, 1 << 20);
                      },
                      "; at least 3 intact records follow it"},
        LogCorruption{"MidLogLengthOneLonger", 4,
                      [](std::string* log, size_t good_end) {
                        SetU32(log, good_end, GetU32(*log, good_end) + 1);
                      },
                      "; at least 3 intact records follow it"},
        LogCorruption{"MidLogLengthOneShorter", 4,
                      [](std::string* log, size_t good_end) {
                        SetU32(log, good_end, GetU32(*log, good_end) - 1);
                      },
                      "; at least 3 intact records follow it"},
        LogCorruption{"MidLogZeroedRecord", 4,
                      [](std::string* log, size_t good_end) {
                        const size_t size = 8 + GetU32(*log, good_end);
                        std::fill(log->begin() + good_end,
                                  log->begin() + good_end + size, '\0');
                      },
                      "; at least 3 intact records follow it"},
        LogCorruption{"LastRecordFlippedPayloadByte", 1,
                      [](std::string* log, size_t) { log->back() ^= 0x20; },
                      "; 0 intact records follow it"},
        LogCorruption{"LastRecordFlippedCrcByte", 1,
                      [](std::string* log, size_t good_end) {
                        (*log)[good_end + 4] ^= 0x01;
                      },
                      "; 0 intact records follow it"},
        LogCorruption{"LastRecordLengthPastEnd", 1,
                      [](std::string* log, size_t good_end) {
                        SetU32(log, good_end, GetU32(*log, good_end) + 1000);
                      },
                      "; 0 intact records follow it"},
        LogCorruption{"LastRecordImplausibleLength", 1,
                      [](std::string* log, size_t good_end) {
                        (*log)[good_end + 3] ^= 0x80;
                      },
                      "; no intact record was found after it"},
        LogCorruption{"GarbageAfterLastRecord", 0,
                      [](std::string* log, size_t) {
                        log->append(300, '\xab');
                      },
                      "; no intact record was found after it"},
        LogCorruption{"ZeroLengthRecordBeforeMoreRecords", 3,
                      [](std::string* log, size_t good_end) {
                        log->insert(good_end, 8, '\0');
                      },
                      "; 3 intact records follow it"}),
    [](const ::testing::TestParamInfo<LogCorruption>& info) {
      return info.param.name;
    });

// No single flipped bit, anywhere in a log, passes for a torn write.
TEST_F(LocalStoreTest, EverySingleBitFlipIsRefused) {
  std::string log_path;
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(CommitNumber(*store, i).ok());
    log_path = store->GetStats().log_path;
  }
  const std::string log = ReadFile(log_path);
  for (size_t at = 0; at < log.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = log;
      flipped[at] ^= static_cast<char>(1 << bit);
      WriteFile(log_path, flipped);
      EXPECT_EQ(LocalStore::Open(dir_).status().code(),
                absl::StatusCode::kDataLoss)
          << "byte " << at << " bit " << bit;
      ASSERT_EQ(ReadFile(log_path), flipped);
    }
  }
}

// Compaction step (a) or (b) done, (c) not: snapshot.tmp and an empty next
// log beside the real snapshot/log.
TEST_F(LocalStoreTest, CrashBeforeSnapshotRenameOpensOldState) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "1").ok());
    ASSERT_TRUE(store->Put("b", "2").ok());
    ASSERT_TRUE(store->Delete("b").ok());
  }
  // A complete generation-1 snapshot with other contents, from another store.
  const std::string other_dir = NewTempDir();
  {
    std::unique_ptr<LocalStore> other = MustOpen(other_dir, CompactAt(1));
    ASSERT_NE(other, nullptr);
    ASSERT_TRUE(other->Put("z", "9").ok());
    ASSERT_EQ(other->GetStats().log_generation, 1);
  }
  WriteFile(Path("snapshot.tmp"), ReadFile(other_dir + "/snapshot"));
  WriteFile(Path("wal.1"), "");

  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "1"}}));
    EXPECT_EQ(store->GetStats().log_generation, 0);
    EXPECT_EQ(DirEntries(dir_), (std::set<std::string>{"LOCK", "wal.0"}));
    ASSERT_TRUE(store->Put("c", "3").ok());
  }
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "1"}, {"c", "3"}}));
}

// Compaction step (d) done, (e) not: the old log is still beside the new
// snapshot. Replaying it would resurrect "b" and revert "a".
TEST_F(LocalStoreTest, CrashAfterSnapshotRenameIgnoresOldLog) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "old").ok());
    ASSERT_TRUE(store->Put("b", "old").ok());
  }
  const std::string stale_log = ReadFile(Path("wal.0"));
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_, CompactAt(1));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("pad", "x").ok());
    ASSERT_EQ(store->GetStats().log_generation, 1);
  }
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "new").ok());
    ASSERT_TRUE(store->Delete("b").ok());
    ASSERT_EQ(store->GetStats().log_generation, 1);
  }
  WriteFile(Path("wal.0"), stale_log);

  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "new"}, {"pad", "x"}}));
  EXPECT_FALSE(FileExists(Path("wal.0")));
}

TEST_F(LocalStoreTest, CorruptSnapshotIsDataLoss) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_, CompactAt(1));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "1").ok());
    ASSERT_TRUE(store->Put("b", "2").ok());
  }
  const std::string snapshot = ReadFile(Path("snapshot"));

  // 32-byte header, then one 23-byte record per entry: "b" starts at 55.
  constexpr int kLastEntryOffset = 32 + 23;
  ASSERT_EQ(snapshot.size(), kLastEntryOffset + 23);
  std::string flipped = snapshot;
  flipped[flipped.size() - 2] ^= 0x01;
  WriteFile(Path("snapshot"), flipped);
  absl::Status status = LocalStore::Open(dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), ::testing::HasSubstr(Path("snapshot")));
  EXPECT_THAT(status.message(), ::testing::HasSubstr(absl::StrCat(
                                    "at offset ", kLastEntryOffset, ":")));
  EXPECT_EQ(ReadFile(Path("snapshot")), flipped);

  WriteFile(Path("snapshot"), snapshot.substr(0, snapshot.size() - 1));
  status = LocalStore::Open(dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), ::testing::HasSubstr(absl::StrCat(
                                    "at offset ", kLastEntryOffset, ":")));

  flipped = snapshot;
  flipped[9] ^= 0x01;  // the header's version
  WriteFile(Path("snapshot"), flipped);
  status = LocalStore::Open(dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("at offset 0:"));

  WriteFile(Path("snapshot"), snapshot);
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "1"}, {"b", "2"}}));
}

TEST_F(LocalStoreTest, DataIsPrivateToItsOwner) {
  const std::string dir = Path("data");
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir, CompactAt(64));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", std::string(100, 'x')).ok());
    ASSERT_TRUE(store->Put("b", "2").ok());
    ASSERT_EQ(store->GetStats().log_generation, 1);
    EXPECT_EQ(store->GetStats().loose_modes_tightened, 0);
  }
  EXPECT_EQ(FileMode(dir), 0700);
  EXPECT_EQ(FileMode(dir + "/LOCK"), 0600);
  EXPECT_EQ(FileMode(dir + "/snapshot"), 0600);
  EXPECT_EQ(FileMode(dir + "/wal.1"), 0600);
}

TEST_F(LocalStoreTest, OpenTightensLooseModes) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "1").ok());
  }
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  ASSERT_EQ(chmod(Path("wal.0").c_str(), 0644), 0);
  ASSERT_EQ(chmod(Path("LOCK").c_str(), 0666), 0);
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->GetStats().loose_modes_tightened, 3);
    EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "1"}}));
  }
  EXPECT_EQ(FileMode(dir_), 0700);
  EXPECT_EQ(FileMode(Path("wal.0")), 0600);
  EXPECT_EQ(FileMode(Path("LOCK")), 0600);
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetStats().loose_modes_tightened, 0);
}

TEST_F(LocalStoreTest, LogNewerThanSnapshotIsDataLoss) {
  { ASSERT_NE(MustOpen(dir_), nullptr); }
  WriteFile(Path("wal.1"), "not empty");
  EXPECT_EQ(LocalStore::Open(dir_).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(LocalStoreTest, SecondOpenInSameProcessFails) {
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::unique_ptr<LocalStore>> second = LocalStore::Open(dir_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  store.reset();
  EXPECT_NE(MustOpen(dir_), nullptr);
}

// Runs `child` in a forked process and returns its exit code (-1 if it did not
// exit normally). `child` must not use gtest assertions.
int RunInChild(const std::function<int()>& child) {
  const pid_t pid = fork();
  if (pid == 0) _exit(child());
  int wstatus = 0;
  if (pid < 0 || waitpid(pid, &wstatus, 0) != pid) return -1;
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

TEST_F(LocalStoreTest, SecondOpenFromAnotherProcessFails) {
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  const std::string dir = dir_;
  EXPECT_EQ(RunInChild([&dir] {
              return LocalStore::Open(dir).status().code() ==
                             absl::StatusCode::kFailedPrecondition
                         ? 0
                         : 1;
            }),
            0);
  store.reset();
  EXPECT_EQ(RunInChild([&dir] { return LocalStore::Open(dir).ok() ? 0 : 1; }),
            0);
}

// A write that hits RLIMIT_FSIZE is short; the store must refuse further
// writes, and a reopen must drop the partial record.
TEST_F(LocalStoreTest, ShortWriteStopsWritesAndIsTruncatedOnReopen) {
  constexpr int kOverLimitBytes = 16;
  const std::string dir = dir_;
  EXPECT_EQ(RunInChild([&dir] {
              signal(SIGXFSZ, SIG_IGN);
              absl::StatusOr<std::unique_ptr<LocalStore>> store =
                  LocalStore::Open(dir);
              if (!store.ok() || !(*store)->Put("a", "1").ok()) return 2;
              struct rlimit limit;
              getrlimit(RLIMIT_FSIZE, &limit);
              limit.rlim_cur = (*store)->GetStats().log_bytes + kOverLimitBytes;
              if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
              if ((*store)->Put("big", std::string(1000, 'x')).ok()) return 4;
              if ((*store)->Put("b", "2").code() !=
                  absl::StatusCode::kFailedPrecondition) {
                return 5;
              }
              if ((*store)->Get("a").value_or("") != "1") return 6;
              if ((*store)->Get("big").ok()) return 7;
              return 0;
            }),
            0);
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), (KeyValueMap{{"a", "1"}}));
  EXPECT_EQ(store->GetStats().bytes_truncated, kOverLimitBytes);
}

std::string NumberedKey(int64_t i) { return absl::StrFormat("n/%08d", i); }
std::string NumberedValue(int64_t i) {
  return absl::StrCat("value-", i, "-", std::string(100, 'x'));
}

// The child of the kill -9 test: commits numbered keys forever, writing each
// number to `ack_fd` once its commit returned OK.
int CommitNumbersUntilKilled(const std::string& dir, int ack_fd) {
  // A small log limit so that kills also land inside compactions.
  absl::StatusOr<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(dir, CompactAt(4096));
  if (!store.ok()) return 2;
  int64_t next = 0;
  if (absl::StatusOr<std::string> last = (*store)->Get("last"); last.ok()) {
    if (!absl::SimpleAtoi(*last, &next)) return 3;
    ++next;
  }
  for (int64_t i = next;; ++i) {
    if (!(*store)
             ->Commit({PutOp(NumberedKey(i), NumberedValue(i)),
                       PutOp("last", absl::StrCat(i))})
             .ok()) {
      return 4;
    }
    if (write(ack_fd, &i, sizeof(i)) != sizeof(i)) return 5;
  }
}

// Reads one acknowledgement; false at end of stream. 8-byte pipe writes are
// atomic, so partial acknowledgements do not occur.
bool ReadAck(int fd, int64_t* number) {
  return read(fd, number, sizeof(*number)) == sizeof(*number);
}

TEST_F(LocalStoreTest, AcknowledgedCommitsSurviveKill9) {
  constexpr int kRounds = 3;
  constexpr int kAcksPerRound = 100;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      _exit(CommitNumbersUntilKilled(dir_, fds[1]));
    }
    close(fds[1]);
    int64_t last_acked = -1;
    int acks = 0;
    while (acks < kAcksPerRound && ReadAck(fds[0], &last_acked)) ++acks;
    kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    // Acknowledgements sent before the kill landed.
    while (ReadAck(fds[0], &last_acked)) ++acks;
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(wstatus))
        << "child exited early with status " << WEXITSTATUS(wstatus);
    ASSERT_GE(acks, kAcksPerRound);

    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    for (int64_t i = 0; i <= last_acked; ++i) {
      ASSERT_EQ(store->Get(NumberedKey(i)).value_or("<missing>"),
                NumberedValue(i))
          << "acknowledged key " << i << " of " << last_acked;
    }
    // At most one commit can be durable without having been acknowledged.
    int64_t last = -1;
    ASSERT_TRUE(absl::SimpleAtoi(store->Get("last").value_or(""), &last));
    EXPECT_GE(last, last_acked);
    EXPECT_LE(last, last_acked + 1);
    EXPECT_EQ(Contents(*store).size(), last + 2);  // n/0..n/last and "last"
  }
}

}  // namespace
}  // namespace joule
