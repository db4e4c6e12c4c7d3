#include "scheduler/store/local_store_repair.h"

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/job_id_floor.h"
#include "scheduler/store/local_store.h"
#include "scheduler/store/local_store_io.h"
#include "scheduler/store/store.h"
#include "scheduler/store/testing/store_files.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using store_testing::DirEntries;
using store_testing::FileMode;
using store_testing::NewTempDir;
using store_testing::ReadFile;
using store_testing::WriteFile;

using KeyValueMap = std::map<std::string, std::string>;

// One stored record of a log: where it is and the keys it writes.
struct LogRecord {
  size_t offset = 0;
  size_t size = 0;
  std::vector<std::string> keys;
};

// Every record of an intact log, read with the store's own decoder.
std::vector<LogRecord> LogRecords(const std::string& log) {
  std::vector<LogRecord> records;
  size_t offset = 0;
  while (true) {
    uint64_t size = 0;
    std::vector<StoreMutation> mutations;
    const local_store_internal::RecordCheck check =
        local_store_internal::CheckRecordAt(log, offset, &size, &mutations);
    if (check != local_store_internal::RecordCheck::kOk) {
      EXPECT_EQ(check, local_store_internal::RecordCheck::kEnd);
      return records;
    }
    LogRecord record{offset, static_cast<size_t>(size), {}};
    for (const StoreMutation& m : mutations) record.keys.push_back(m.key);
    records.push_back(std::move(record));
    offset += size;
  }
}

// The first record that writes `key`.
LogRecord FirstRecordWriting(const std::string& log, const std::string& key) {
  for (const LogRecord& record : LogRecords(log)) {
    for (const std::string& k : record.keys) {
      if (k == key) return record;
    }
  }
  ADD_FAILURE() << "no record writes " << key;
  return {};
}

KeyValueMap Contents(const Store& store) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> all =
      store.List("");
  EXPECT_TRUE(all.ok()) << all.status();
  return all.ok() ? KeyValueMap(all->begin(), all->end()) : KeyValueMap{};
}

std::unique_ptr<LocalStore> MustOpen(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

constexpr int kGoodCommits = 5;

absl::Status CommitNumber(Store& store, int i) {
  return store.Commit(
      {StoreMutation{StoreMutation::Op::kPut, absl::StrCat("job/", i),
                     absl::StrCat("spec-", i)},
       StoreMutation{StoreMutation::Op::kPut, absl::StrCat("idx/", i),
                     absl::StrCat(i)}});
}

KeyValueMap CommitsUpTo(int n) {
  KeyValueMap expected;
  for (int i = 0; i < n; ++i) {
    expected[absl::StrCat("job/", i)] = absl::StrCat("spec-", i);
    expected[absl::StrCat("idx/", i)] = absl::StrCat(i);
  }
  return expected;
}

class RepairLocalStoreTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  // kGoodCommits commits, then `more` commits; returns where the first of
  // the `more` starts.
  size_t MakeLog(int more) {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    EXPECT_NE(store, nullptr);
    if (store == nullptr) return 0;
    for (int i = 0; i < kGoodCommits; ++i) {
      EXPECT_TRUE(CommitNumber(*store, i).ok());
    }
    const size_t good_end = store->GetStats().log_bytes;
    for (int i = 0; i < more; ++i) {
      EXPECT_TRUE(CommitNumber(*store, kGoodCommits + i).ok());
    }
    return good_end;
  }

  std::string CopyName() const {
    return absl::StrCat("wal.0.corrupt-", absl::ToUnixSeconds(clock_.Now()));
  }

  const std::string dir_ = NewTempDir();
  FakeClock clock_;
};

TEST_F(RepairLocalStoreTest, SoundStoreIsLeftAlone) {
  MakeLog(2);
  const std::string log = ReadFile(Path("wal.0"));
  const std::set<std::string> files = DirEntries(dir_);

  absl::StatusOr<RepairReport> report = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->repaired);
  EXPECT_EQ(report->log_path, Path("wal.0"));
  EXPECT_EQ(report->records_kept, kGoodCommits + 2);
  EXPECT_EQ(report->records_dropped, 0);
  EXPECT_EQ(report->copy_path, "");
  EXPECT_EQ(report->job_id_floor, 0);
  EXPECT_EQ(ReadFile(Path("wal.0")), log);
  EXPECT_EQ(DirEntries(dir_), files);
}

TEST_F(RepairLocalStoreTest, MissingDirectoryIsNotFound) {
  EXPECT_EQ(RepairLocalStore(Path("absent"), clock_).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RepairLocalStoreTest, OpenStoreIsNotRepaired) {
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(RepairLocalStore(dir_, clock_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RepairLocalStoreTest, KeepsACopyAndCutsAtTheFirstBadRecord) {
  const size_t good_end = MakeLog(4);
  std::string damaged = ReadFile(Path("wal.0"));
  damaged[good_end + 20] ^= 0x01;
  WriteFile(Path("wal.0"), damaged);
  ASSERT_EQ(LocalStore::Open(dir_).status().code(),
            absl::StatusCode::kDataLoss);

  absl::StatusOr<RepairReport> report = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->repaired);
  EXPECT_FALSE(report->torn_write);
  EXPECT_EQ(report->cut_offset, good_end);
  EXPECT_EQ(report->problem, "record crc mismatch");
  EXPECT_EQ(report->records_kept, kGoodCommits);
  EXPECT_EQ(report->records_dropped, 4);  // the bad one and 3 after it
  EXPECT_TRUE(report->records_dropped_exact);
  EXPECT_EQ(report->bytes_dropped, damaged.size() - good_end);
  EXPECT_EQ(report->copy_path, Path(CopyName()));
  EXPECT_EQ(ReadFile(report->copy_path), damaged);
  EXPECT_EQ(FileMode(report->copy_path), 0600);
  EXPECT_EQ(FileMode(Path("wal.0")), 0600);
  EXPECT_EQ(ReadFile(Path("wal.0")).substr(0, good_end),
            damaged.substr(0, good_end));
  EXPECT_EQ(DirEntries(dir_),
            (std::set<std::string>{"LOCK", "wal.0", CopyName()}));

  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    KeyValueMap expected = CommitsUpTo(kGoodCommits);
    expected[kJobIdFloorKey] = absl::StrCat(report->job_id_floor);
    EXPECT_EQ(Contents(*store), expected);
    EXPECT_EQ(store->GetStats().records_replayed, kGoodCommits + 1);
    EXPECT_EQ(store->GetStats().bytes_truncated, 0);
  }
  absl::StatusOr<RepairReport> again = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->repaired);
}

TEST_F(RepairLocalStoreTest, CopiesAreNeverOverwritten) {
  size_t good_end = MakeLog(2);
  std::string first_damage = ReadFile(Path("wal.0"));
  first_damage[good_end + 4] ^= 0x01;
  WriteFile(Path("wal.0"), first_damage);
  ASSERT_TRUE(RepairLocalStore(dir_, clock_).ok());

  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    good_end = store->GetStats().log_bytes;
    ASSERT_TRUE(CommitNumber(*store, 100).ok());
    ASSERT_TRUE(CommitNumber(*store, 101).ok());
  }
  std::string second_damage = ReadFile(Path("wal.0"));
  second_damage[good_end + 4] ^= 0x01;
  WriteFile(Path("wal.0"), second_damage);

  // The same second: the first copy's name is taken.
  absl::StatusOr<RepairReport> report = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->copy_path, Path(CopyName() + ".1"));
  EXPECT_EQ(ReadFile(report->copy_path), second_damage);
  EXPECT_EQ(ReadFile(Path(CopyName())), first_damage);
}

TEST_F(RepairLocalStoreTest, TornWriteIsCutLikeOpenWould) {
  MakeLog(1);
  std::string log = ReadFile(Path("wal.0"));
  log.resize(log.size() - 3);
  WriteFile(Path("wal.0"), log);

  absl::StatusOr<RepairReport> report = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->repaired);
  EXPECT_TRUE(report->torn_write);
  EXPECT_EQ(report->records_kept, kGoodCommits);
  EXPECT_EQ(report->records_dropped, 1);
  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Get("job/0").value_or(""), "spec-0");
}

TEST_F(RepairLocalStoreTest, CorruptSnapshotIsRefused) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("a", "1").ok());
  }
  {
    // Compact into a snapshot, then add to the new log.
    LocalStoreOptions options;
    options.compact_log_bytes = 1;
    absl::StatusOr<std::unique_ptr<LocalStore>> store =
        LocalStore::Open(dir_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Put("b", "2").ok());
    ASSERT_EQ((*store)->GetStats().log_generation, 1);
  }
  std::string snapshot = ReadFile(Path("snapshot"));
  snapshot[snapshot.size() - 1] ^= 0x01;
  WriteFile(Path("snapshot"), snapshot);
  const std::set<std::string> files = DirEntries(dir_);
  const std::string log = ReadFile(Path("wal.1"));

  absl::Status status = RepairLocalStore(dir_, clock_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("cannot repair a corrupt snapshot"));
  EXPECT_THAT(status.message(),
              HasSubstr("restore the data directory from a backup"));
  EXPECT_THAT(status.message(), HasSubstr(Path("snapshot")));
  EXPECT_EQ(DirEntries(dir_), files);
  EXPECT_EQ(ReadFile(Path("snapshot")), snapshot);
  EXPECT_EQ(ReadFile(Path("wal.1")), log);
}

// Wherever a byte is damaged, the repair keeps exactly the records before
// the one it hit.
TEST_F(RepairLocalStoreTest, EveryFlippedByteIsRepaired) {
  MakeLog(0);
  const std::string log = ReadFile(Path("wal.0"));
  const std::vector<LogRecord> records = LogRecords(log);
  ASSERT_EQ(records.size(), kGoodCommits);
  for (size_t at = 0; at < log.size(); ++at) {
    SCOPED_TRACE(absl::StrCat("byte ", at));
    int hit = 0;
    while (records[hit].offset + records[hit].size <= at) ++hit;
    const std::string dir = NewTempDir();
    std::string flipped = log;
    flipped[at] ^= 0x10;
    WriteFile(dir + "/wal.0", flipped);

    absl::StatusOr<RepairReport> report = RepairLocalStore(dir, clock_);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->repaired);
    EXPECT_EQ(report->cut_offset, records[hit].offset);
    EXPECT_EQ(report->records_kept, hit);
    EXPECT_EQ(ReadFile(report->copy_path), flipped);
    std::unique_ptr<LocalStore> store = MustOpen(dir);
    ASSERT_NE(store, nullptr);
    KeyValueMap expected = CommitsUpTo(hit);
    expected[kJobIdFloorKey] = absl::StrCat(report->job_id_floor);
    EXPECT_EQ(Contents(*store), expected);
  }
}

// --- Job ids after a repair --------------------------------------------

constexpr int kJobs = 10;

int64_t JobNumberOf(const std::string& job_id) {
  int64_t n = -1;
  EXPECT_TRUE(absl::StartsWith(job_id, "job-")) << job_id;
  EXPECT_TRUE(absl::SimpleAtoi(job_id.substr(4), &n)) << job_id;
  return n;
}

std::unique_ptr<Scheduler> NewScheduler(Store* store, const Clock* clock) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(store, clock, SchedulerOptions());
  EXPECT_TRUE(scheduler.ok()) << scheduler.status();
  return scheduler.ok() ? *std::move(scheduler) : nullptr;
}

std::string SubmitJob(Scheduler& scheduler) {
  v1::JobSpec spec;
  spec.set_name("train");
  spec.set_command("/usr/bin/train");
  absl::StatusOr<v1::Job> job = scheduler.SubmitJob(spec);
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? job->id() : "";
}

struct JobIdDamage {
  std::string name;
  // Damages `log`, whose submission records `records[i]` wrote job-<i+1>.
  std::function<void(std::string* log, const std::vector<LogRecord>& records)>
      apply;
};

void PrintTo(const JobIdDamage& damage, std::ostream* os) {
  *os << damage.name;
}

class RepairJobIdTest : public RepairLocalStoreTest,
                        public ::testing::WithParamInterface<JobIdDamage> {};

TEST_P(RepairJobIdTest, NoJobIdIsHandedOutAgain) {
  {
    std::unique_ptr<LocalStore> store = MustOpen(dir_);
    ASSERT_NE(store, nullptr);
    std::unique_ptr<Scheduler> scheduler = NewScheduler(store.get(), &clock_);
    ASSERT_NE(scheduler, nullptr);
    for (int i = 1; i <= kJobs; ++i) {
      ASSERT_EQ(SubmitJob(*scheduler), absl::StrCat("job-", i));
    }
  }
  std::string log = ReadFile(Path("wal.0"));
  std::vector<LogRecord> submissions;
  for (int i = 1; i <= kJobs; ++i) {
    submissions.push_back(FirstRecordWriting(log, absl::StrCat("jobs/job-", i)));
  }
  GetParam().apply(&log, submissions);
  WriteFile(Path("wal.0"), log);
  ASSERT_EQ(LocalStore::Open(dir_).status().code(),
            absl::StatusCode::kDataLoss);

  absl::StatusOr<RepairReport> report = RepairLocalStore(dir_, clock_);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->repaired);
  EXPECT_GE(report->job_id_floor, kJobs);

  std::unique_ptr<LocalStore> store = MustOpen(dir_);
  ASSERT_NE(store, nullptr);
  std::unique_ptr<Scheduler> scheduler = NewScheduler(store.get(), &clock_);
  ASSERT_NE(scheduler, nullptr);
  const int64_t next = JobNumberOf(SubmitJob(*scheduler));
  EXPECT_GT(next, kJobs);
  EXPECT_EQ(next, report->job_id_floor + 1);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, RepairJobIdTest,
    ::testing::Values(
        JobIdDamage{"MidLog",
                    [](std::string* log, const std::vector<LogRecord>& r) {
                      (*log)[r[6].offset + r[6].size / 2] ^= 0x10;
                    }},
        JobIdDamage{"LastSubmission",
                    [](std::string* log, const std::vector<LogRecord>& r) {
                      (*log)[r[9].offset + r[9].size / 2] ^= 0x10;
                    }},
        // "jobs/job-10" -> "jobs/job-00" in the key of the last record.
        JobIdDamage{"DigitOfNewestIdFlippedDown",
                    [](std::string* log, const std::vector<LogRecord>& r) {
                      const size_t at = log->find("jobs/job-10", r[9].offset);
                      ASSERT_NE(at, std::string::npos);
                      (*log)[at + 9] ^= 0x01;
                    }},
        // The newest submission's header: nothing of it can be walked.
        JobIdDamage{"LengthOfNewestSubmission",
                    [](std::string* log, const std::vector<LogRecord>& r) {
                      (*log)[r[9].offset + 3] ^= 0x80;
                    }},
        // Every "job-" of the newest submission unreadable.
        JobIdDamage{"NewestIdErased",
                    [](std::string* log, const std::vector<LogRecord>& r) {
                      for (size_t at = log->find("job-10", r[9].offset);
                           at != std::string::npos;
                           at = log->find("job-10", at + 1)) {
                        (*log)[at] = 'x';
                      }
                    }}),
    [](const ::testing::TestParamInfo<JobIdDamage>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace joule
