#include "scheduler/store/group_commit_writer.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/store/local_store.h"
#include "scheduler/store/memory_store.h"
#include "scheduler/store/store_conformance.h"
#include "scheduler/store/testing/store_files.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

StoreMutation PutOp(std::string key, std::string value) {
  return StoreMutation{StoreMutation::Op::kPut, std::move(key), std::move(value)};
}

StoreMutation DeleteOp(std::string key) {
  return StoreMutation{StoreMutation::Op::kDelete, std::move(key), ""};
}

// "put k=v" / "delete k", for comparing what a commit carried.
std::string Describe(const StoreMutation& mutation) {
  return mutation.op == StoreMutation::Op::kPut
             ? absl::StrCat("put ", mutation.key, "=", mutation.value)
             : absl::StrCat("delete ", mutation.key);
}

// A MemoryStore that records every Commit it gets, can hold commits at a
// gate (so that a test decides what queues up behind one), and fails the
// commits that touch a key starting with "fail/".
//
// Thread-safe; state guarded by mu_.
class RecordingStore : public Store {
 public:
  // Commits wait at the gate until Open (it starts open).
  void Close() {
    absl::MutexLock lock(&mu_);
    gate_open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    gate_open_ = true;
  }
  // Blocks until `n` commits have reached the store (held at the gate or
  // not).
  void AwaitArrived(int n) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return arrived_ >= n; };
    mu_.Await(absl::Condition(&arrived));
  }
  std::vector<std::vector<std::string>> commits() const {
    absl::MutexLock lock(&mu_);
    return commits_;
  }

  absl::Status Put(absl::string_view key, absl::string_view value) override {
    return Commit({PutOp(std::string(key), std::string(value))});
  }
  absl::Status Delete(absl::string_view key) override {
    return Commit({DeleteOp(std::string(key))});
  }
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override {
    bool fail = false;
    {
      absl::MutexLock lock(&mu_);
      ++arrived_;
      mu_.Await(absl::Condition(&gate_open_));
      std::vector<std::string> described;
      for (const StoreMutation& mutation : mutations) {
        described.push_back(Describe(mutation));
        fail |= absl::StartsWith(mutation.key, "fail/");
      }
      commits_.push_back(std::move(described));
    }
    if (fail) return absl::UnavailableError("disk on fire");
    return base_.Commit(mutations);
  }
  absl::StatusOr<std::string> Get(absl::string_view key) const override {
    return base_.Get(key);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override {
    return base_.List(prefix);
  }

 private:
  MemoryStore base_;
  mutable absl::Mutex mu_;
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<std::string>> commits_ ABSL_GUARDED_BY(mu_);
};

// Holds the writer's thread in a first commit of "hold" while the test
// queues more behind it; Release lets it go.
class GroupCommitWriterTest : public ::testing::Test {
 protected:
  void MakeWriter(GroupCommitWriterOptions options = {}) {
    writer_ = std::make_unique<GroupCommitWriter>(&store_, options);
  }
  // Puts "hold" and waits until the writer's thread is inside its commit.
  void Hold() {
    store_.Close();
    held_ = writer_->Enqueue({PutOp("hold", "1")});
    ASSERT_TRUE(held_.ok()) << held_.status();
    store_.AwaitArrived(1);
  }
  void Release() {
    store_.Open();
    EXPECT_TRUE(writer_->Wait(*held_).ok());
  }
  // Waits until `n` tickets are queued behind the held commit.
  void AwaitQueued(int64_t n) {
    // The writer publishes the count under its lock; poll it without sleeps
    // of fixed length (the enqueuing threads are running).
    while (writer_->GetStats().queued < n) std::this_thread::yield();
  }

  RecordingStore store_;
  std::unique_ptr<GroupCommitWriter> writer_;
  absl::StatusOr<GroupCommitWriter::Ticket> held_ = absl::UnknownError("not held");
};

TEST_F(GroupCommitWriterTest, ConcurrentPutsShareCommits) {
  MakeWriter();
  Hold();
  constexpr int kThreads = 32;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      if (!writer_->Put(absl::StrCat("job/", t), absl::StrCat("v", t)).ok()) ++failed;
    });
  }
  AwaitQueued(kThreads);
  Release();
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failed, 0);
  // The held commit, then all 32 puts in one.
  const auto commits = store_.commits();
  ASSERT_THAT(commits, SizeIs(2));
  EXPECT_THAT(commits[1], SizeIs(kThreads));
  const GroupCommitWriter::Stats stats = writer_->GetStats();
  EXPECT_EQ(stats.commits, 2);
  EXPECT_EQ(stats.enqueued, kThreads + 1);
  EXPECT_EQ(stats.largest_batch, kThreads);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(writer_->Get(absl::StrCat("job/", t)).value_or(""), absl::StrCat("v", t));
  }
}

TEST_F(GroupCommitWriterTest, CoalescesTheSameKeyKeepingFirstPosition) {
  MakeWriter();
  Hold();
  std::vector<GroupCommitWriter::Ticket> tickets;
  for (std::vector<StoreMutation> mutations :
       {std::vector<StoreMutation>{PutOp("a", "1"), PutOp("b", "1")},
        std::vector<StoreMutation>{PutOp("c", "1")}, std::vector<StoreMutation>{PutOp("a", "2")},
        std::vector<StoreMutation>{DeleteOp("b"), PutOp("c", "2")},
        std::vector<StoreMutation>{PutOp("d", "1"), DeleteOp("d")}}) {
    absl::StatusOr<GroupCommitWriter::Ticket> ticket = writer_->Enqueue(std::move(mutations));
    ASSERT_TRUE(ticket.ok()) << ticket.status();
    tickets.push_back(*ticket);
  }
  AwaitQueued(5);
  Release();
  for (GroupCommitWriter::Ticket ticket : tickets) EXPECT_TRUE(writer_->Wait(ticket).ok());
  const auto commits = store_.commits();
  ASSERT_THAT(commits, SizeIs(2));
  EXPECT_THAT(commits[1], ElementsAre("put a=2", "delete b", "put c=2", "delete d"));
  EXPECT_EQ(writer_->Get("a").value_or(""), "2");
  EXPECT_EQ(writer_->Get("b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(writer_->Get("c").value_or(""), "2");
  EXPECT_EQ(writer_->Get("d").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GroupCommitWriterTest, SplitsAtTheMutationLimitButNeverSplitsAnEnqueue) {
  GroupCommitWriterOptions options;
  options.max_batch_mutations = 3;
  MakeWriter(options);
  Hold();
  std::vector<GroupCommitWriter::Ticket> tickets;
  auto enqueue = [&](std::vector<StoreMutation> mutations) {
    absl::StatusOr<GroupCommitWriter::Ticket> ticket = writer_->Enqueue(std::move(mutations));
    ASSERT_TRUE(ticket.ok()) << ticket.status();
    tickets.push_back(*ticket);
  };
  enqueue({PutOp("a", "1")});
  enqueue({PutOp("b", "1")});
  enqueue({PutOp("a", "2")});  // coalesced: the batch still has 2 keys
  enqueue({PutOp("c", "1")});
  enqueue({PutOp("d", "1")});  // a 4th key: next batch
  enqueue({PutOp("e", "1"), PutOp("f", "1"), PutOp("g", "1"), PutOp("h", "1")});  // alone
  enqueue({PutOp("i", "1")});
  AwaitQueued(7);
  Release();
  for (GroupCommitWriter::Ticket ticket : tickets) EXPECT_TRUE(writer_->Wait(ticket).ok());
  const auto commits = store_.commits();
  ASSERT_THAT(commits, SizeIs(5));
  EXPECT_THAT(commits[1], ElementsAre("put a=2", "put b=1", "put c=1"));
  EXPECT_THAT(commits[2], ElementsAre("put d=1"));
  EXPECT_THAT(commits[3], ElementsAre("put e=1", "put f=1", "put g=1", "put h=1"));
  EXPECT_THAT(commits[4], ElementsAre("put i=1"));
}

TEST_F(GroupCommitWriterTest, SplitsAtTheByteLimit) {
  GroupCommitWriterOptions options;
  options.max_batch_bytes = 10;
  MakeWriter(options);
  Hold();
  std::vector<GroupCommitWriter::Ticket> tickets;
  for (const char* key : {"k1", "k2", "k3", "k4"}) {
    // 2 key bytes + 3 value bytes: two fit in 10 bytes.
    absl::StatusOr<GroupCommitWriter::Ticket> ticket = writer_->Enqueue({PutOp(key, "vvv")});
    ASSERT_TRUE(ticket.ok());
    tickets.push_back(*ticket);
  }
  AwaitQueued(4);
  Release();
  for (GroupCommitWriter::Ticket ticket : tickets) EXPECT_TRUE(writer_->Wait(ticket).ok());
  const auto commits = store_.commits();
  ASSERT_THAT(commits, SizeIs(3));
  EXPECT_THAT(commits[1], ElementsAre("put k1=vvv", "put k2=vvv"));
  EXPECT_THAT(commits[2], ElementsAre("put k3=vvv", "put k4=vvv"));
}

TEST_F(GroupCommitWriterTest, AFailedCommitFailsEveryTicketOfItAndNoOther) {
  GroupCommitWriterOptions options;
  options.max_batch_mutations = 2;
  MakeWriter(options);
  Hold();
  auto enqueue = [&](const std::string& key) {
    absl::StatusOr<GroupCommitWriter::Ticket> ticket = writer_->Enqueue({PutOp(key, "v")});
    EXPECT_TRUE(ticket.ok());
    return ticket.value_or(0);
  };
  const GroupCommitWriter::Ticket before = enqueue("ok/1");
  const GroupCommitWriter::Ticket doomed = enqueue("fail/1");  // batch 1 with ok/1
  const GroupCommitWriter::Ticket after1 = enqueue("ok/2");
  const GroupCommitWriter::Ticket after2 = enqueue("ok/3");  // batch 2
  std::vector<absl::Status> callback_statuses;
  absl::StatusOr<GroupCommitWriter::Ticket> with_callback =
      writer_->Enqueue({PutOp("ok/4", "v")}, [&](const absl::Status& status) {
        callback_statuses.push_back(status);
      });
  ASSERT_TRUE(with_callback.ok());
  AwaitQueued(5);
  Release();
  EXPECT_EQ(writer_->Wait(before).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(writer_->Wait(doomed).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(writer_->Wait(after1).ok());
  EXPECT_TRUE(writer_->Wait(after2).ok());
  writer_->Flush();
  ASSERT_THAT(callback_statuses, SizeIs(1));
  EXPECT_TRUE(callback_statuses[0].ok());
  EXPECT_EQ(writer_->Get("ok/1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(writer_->Get("ok/2").value_or(""), "v");
  EXPECT_EQ(writer_->GetStats().failed_commits, 1);
}

TEST_F(GroupCommitWriterTest, AnInvalidEnqueueIsRefusedAloneAndOthersCommit) {
  MakeWriter();
  Hold();
  absl::StatusOr<GroupCommitWriter::Ticket> good1 = writer_->Enqueue({PutOp("a", "1")});
  const absl::StatusOr<GroupCommitWriter::Ticket> bad_key =
      writer_->Enqueue({PutOp("b", "1"), PutOp("", "2")});
  const absl::StatusOr<GroupCommitWriter::Ticket> bad_value =
      writer_->Enqueue({PutOp("c", std::string(kMaxValueBytes + 1, 'v'))});
  bool called = false;
  const absl::StatusOr<GroupCommitWriter::Ticket> bad_with_callback = writer_->Enqueue(
      {PutOp(std::string(kMaxKeyBytes + 1, 'k'), "v")},
      [&](const absl::Status&) { called = true; });
  absl::StatusOr<GroupCommitWriter::Ticket> good2 = writer_->Enqueue({PutOp("d", "1")});
  ASSERT_TRUE(good1.ok());
  ASSERT_TRUE(good2.ok());
  EXPECT_EQ(bad_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_key.status().message(), ValidateStoreKey("").message());
  EXPECT_EQ(bad_value.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_value.status().message(), HasSubstr("value size limit"));
  EXPECT_EQ(bad_with_callback.status().code(), absl::StatusCode::kInvalidArgument);
  AwaitQueued(2);
  Release();
  EXPECT_TRUE(writer_->Wait(*good1).ok());
  EXPECT_TRUE(writer_->Wait(*good2).ok());
  writer_->Flush();
  EXPECT_FALSE(called);
  EXPECT_EQ(writer_->Get("b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(writer_->Get("d").value_or(""), "1");
  const auto commits = store_.commits();
  ASSERT_THAT(commits, SizeIs(2));
  EXPECT_THAT(commits[1], ElementsAre("put a=1", "put d=1"));
}

TEST_F(GroupCommitWriterTest, WaitRefusesUnknownRepeatedAndCallbackTickets) {
  MakeWriter();
  absl::StatusOr<GroupCommitWriter::Ticket> ticket = writer_->Enqueue({PutOp("a", "1")});
  ASSERT_TRUE(ticket.ok());
  EXPECT_TRUE(writer_->Wait(*ticket).ok());
  EXPECT_EQ(writer_->Wait(*ticket).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer_->Wait(12345).code(), absl::StatusCode::kInvalidArgument);
  absl::Notification called;
  absl::StatusOr<GroupCommitWriter::Ticket> with_callback =
      writer_->Enqueue({PutOp("b", "1")}, [&](const absl::Status&) { called.Notify(); });
  ASSERT_TRUE(with_callback.ok());
  EXPECT_EQ(writer_->Wait(*with_callback).code(), absl::StatusCode::kInvalidArgument);
  called.WaitForNotification();
}

// Callbacks run on the writer's thread, in ticket order, after the commit,
// with no writer lock held: one may enqueue more.
TEST_F(GroupCommitWriterTest, CallbacksRunInOrderAfterTheCommitAndMayEnqueue) {
  MakeWriter();
  Hold();
  absl::Mutex mu;
  std::vector<std::string> seen;
  const std::thread::id test_thread = std::this_thread::get_id();
  std::atomic<bool> on_test_thread{false};
  absl::Notification chained_done;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(writer_
                    ->Enqueue({PutOp(absl::StrCat("c/", i), "v")},
                              [&, i](const absl::Status& status) {
                                if (std::this_thread::get_id() == test_thread) {
                                  on_test_thread = true;
                                }
                                // Durable before the callback: the store has it.
                                const bool stored =
                                    store_.Get(absl::StrCat("c/", i)).ok() && status.ok();
                                {
                                  absl::MutexLock lock(&mu);
                                  seen.push_back(absl::StrCat(i, stored ? " stored" : " missing"));
                                }
                                if (i == 2) {
                                  EXPECT_TRUE(writer_
                                                  ->Enqueue({PutOp("chained", "v")},
                                                            [&](const absl::Status& chained) {
                                                              EXPECT_TRUE(chained.ok());
                                                              chained_done.Notify();
                                                            })
                                                  .ok());
                                }
                              })
                    .ok());
  }
  AwaitQueued(3);
  Release();
  chained_done.WaitForNotification();
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre("0 stored", "1 stored", "2 stored"));
  EXPECT_FALSE(on_test_thread);
  EXPECT_EQ(store_.Get("chained").value_or(""), "v");
}

TEST_F(GroupCommitWriterTest, DestructorWritesEverythingQueuedAndRunsCallbacks) {
  MakeWriter();
  Hold();
  std::atomic<int> callbacks{0};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(writer_
                    ->Enqueue({PutOp(absl::StrCat("d/", i), "v")},
                              [&](const absl::Status& status) {
                                if (status.ok()) ++callbacks;
                              })
                    .ok());
  }
  AwaitQueued(20);
  store_.Open();
  writer_.reset();  // the held commit's ticket is never waited for
  EXPECT_EQ(callbacks, 20);
  EXPECT_EQ(store_.List("d/").value_or(KeyValues{}).size(), 20);
}

TEST(GroupCommitWriterInlineTest, CommitsAndCallsBackBeforeEnqueueReturns) {
  RecordingStore store;
  GroupCommitWriterOptions options;
  options.inline_commits = true;
  GroupCommitWriter writer(&store, options);
  const std::thread::id caller = std::this_thread::get_id();
  bool called = false;
  absl::StatusOr<GroupCommitWriter::Ticket> ticket =
      writer.Enqueue({PutOp("a", "1")}, [&](const absl::Status& status) {
        EXPECT_TRUE(status.ok());
        EXPECT_EQ(std::this_thread::get_id(), caller);
        EXPECT_EQ(store.Get("a").value_or(""), "1");
        called = true;
      });
  ASSERT_TRUE(ticket.ok());
  EXPECT_TRUE(called);
  absl::StatusOr<GroupCommitWriter::Ticket> failing = writer.Enqueue({PutOp("fail/x", "1")});
  ASSERT_TRUE(failing.ok());
  EXPECT_EQ(writer.Wait(*failing).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(writer.Put("b", "2").ok());
  EXPECT_THAT(store.commits(), SizeIs(3));
  EXPECT_EQ(writer.GetStats().commits, 3);
  EXPECT_EQ(writer.GetStats().failed_commits, 1);
}

TEST(GroupCommitWriterInlineTest, EmptyCommitTouchesNothing) {
  RecordingStore store;
  GroupCommitWriter writer(&store);
  EXPECT_TRUE(writer.Commit({}).ok());
  EXPECT_THAT(store.commits(), IsEmpty());
}

// The writer is a Store: the conformance suite over it, on the in-memory
// store and on the embedded durable one. The factory's store owns both.
class WriterOwningItsStore : public Store {
 public:
  explicit WriterOwningItsStore(std::unique_ptr<Store> base)
      : base_(std::move(base)), writer_(std::make_unique<GroupCommitWriter>(base_.get())) {}

  absl::Status Put(absl::string_view key, absl::string_view value) override {
    return writer_->Put(key, value);
  }
  absl::Status Delete(absl::string_view key) override { return writer_->Delete(key); }
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override {
    return writer_->Commit(mutations);
  }
  absl::StatusOr<std::string> Get(absl::string_view key) const override {
    return writer_->Get(key);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override {
    return writer_->List(prefix);
  }

 private:
  std::unique_ptr<Store> base_;
  std::unique_ptr<GroupCommitWriter> writer_;  // destroyed first
};

INSTANTIATE_TEST_SUITE_P(
    GroupCommitWriter, StoreConformanceTest,
    ::testing::Values(
        StoreConformanceParam{"OnMemoryStore",
                              []() -> absl::StatusOr<std::unique_ptr<Store>> {
                                return std::make_unique<WriterOwningItsStore>(
                                    std::make_unique<MemoryStore>());
                              }},
        StoreConformanceParam{"OnLocalStore",
                              []() -> absl::StatusOr<std::unique_ptr<Store>> {
                                absl::StatusOr<std::unique_ptr<LocalStore>> local =
                                    LocalStore::Open(store_testing::NewTempDir());
                                if (!local.ok()) return local.status();
                                return std::make_unique<WriterOwningItsStore>(
                                    *std::move(local));
                              }}),
    StoreConformanceParamName);

}  // namespace
}  // namespace joule
