#include "scheduler/store/store_conformance.h"

#include <atomic>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

StoreMutation PutOp(std::string key, std::string value) {
  return StoreMutation{StoreMutation::Op::kPut, std::move(key),
                       std::move(value)};
}

StoreMutation DeleteOp(std::string key) {
  return StoreMutation{StoreMutation::Op::kDelete, std::move(key), ""};
}

TEST_P(StoreConformanceTest, PutThenGet) {
  ASSERT_TRUE(store().Put("jobs/1", "spec-1").ok());
  absl::StatusOr<std::string> value = store().Get("jobs/1");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "spec-1");
}

TEST_P(StoreConformanceTest, GetMissingKeyIsNotFound) {
  EXPECT_EQ(store().Get("jobs/none").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, PutOverwrites) {
  ASSERT_TRUE(store().Put("k", "old").ok());
  ASSERT_TRUE(store().Put("k", "new").ok());
  EXPECT_EQ(store().Get("k").value_or(""), "new");
}

TEST_P(StoreConformanceTest, EmptyValueIsStoredAndDistinctFromAbsent) {
  ASSERT_TRUE(store().Put("k", "").ok());
  absl::StatusOr<std::string> value = store().Get("k");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "");
}

TEST_P(StoreConformanceTest, BinaryKeysAndValuesRoundTrip) {
  const std::string key("a\0b\xff", 4);
  const std::string value("\0\x01\xfe\xff", 4);
  ASSERT_TRUE(store().Put(key, value).ok());
  EXPECT_EQ(store().Get(key).value_or(""), value);
  EXPECT_EQ(store().Get("a").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, DeleteRemovesKeyAndIsOkWhenAbsent) {
  EXPECT_TRUE(store().Delete("k").ok());
  ASSERT_TRUE(store().Put("k", "v").ok());
  ASSERT_TRUE(store().Put("k2", "v2").ok());
  ASSERT_TRUE(store().Delete("k").ok());
  EXPECT_EQ(store().Get("k").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store().Get("k2").value_or(""), "v2");
  EXPECT_TRUE(store().Delete("k").ok());
}

TEST_P(StoreConformanceTest, ListReturnsPrefixMatchesInBytewiseKeyOrder) {
  // Inserted out of order; "\xff" must sort after ASCII (unsigned bytes).
  for (const char* key : {"jobs/b", "jobt/a", "jobs/\xff", "job", "jobs/B",
                          "other/x", "jobs", "jobs/a"}) {
    ASSERT_TRUE(store().Put(key, absl::StrCat("v:", key)).ok());
  }
  absl::StatusOr<KeyValues> jobs = store().List("jobs/");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(
      *jobs, ElementsAre(Pair("jobs/B", "v:jobs/B"), Pair("jobs/a", "v:jobs/a"),
                         Pair("jobs/b", "v:jobs/b"),
                         Pair("jobs/\xff", "v:jobs/\xff")));

  absl::StatusOr<KeyValues> with_parent = store().List("jobs");
  ASSERT_TRUE(with_parent.ok());
  ASSERT_EQ(with_parent->size(), 5);
  EXPECT_EQ(with_parent->front().first, "jobs");

  absl::StatusOr<KeyValues> all = store().List("");
  ASSERT_TRUE(all.ok());
  std::vector<std::string> keys;
  for (const auto& [key, value] : *all) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre("job", "jobs", "jobs/B", "jobs/a", "jobs/b",
                                "jobs/\xff", "jobt/a", "other/x"));

  absl::StatusOr<KeyValues> none = store().List("nothing/");
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
}

TEST_P(StoreConformanceTest, ListDoesNotShowDeletedKeys) {
  ASSERT_TRUE(store().Put("p/1", "a").ok());
  ASSERT_TRUE(store().Put("p/2", "b").ok());
  ASSERT_TRUE(store().Delete("p/1").ok());
  EXPECT_THAT(store().List("p/").value_or(KeyValues{}),
              ElementsAre(Pair("p/2", "b")));
}

TEST_P(StoreConformanceTest, CommitAppliesAllMutationsInOrder) {
  ASSERT_TRUE(store().Put("c", "doomed").ok());
  ASSERT_TRUE(store()
                  .Commit({PutOp("a", "1"), PutOp("b", "2"), DeleteOp("c"),
                           PutOp("a", "3"), PutOp("d", "4"), DeleteOp("d")})
                  .ok());
  EXPECT_THAT(store().List("").value_or(KeyValues{}),
              ElementsAre(Pair("a", "3"), Pair("b", "2")));
}

TEST_P(StoreConformanceTest, EmptyCommitIsNoOp) {
  ASSERT_TRUE(store().Put("a", "1").ok());
  EXPECT_TRUE(store().Commit({}).ok());
  EXPECT_THAT(store().List("").value_or(KeyValues{}),
              ElementsAre(Pair("a", "1")));
}

TEST_P(StoreConformanceTest, CommitWithAnInvalidMutationAppliesNothing) {
  ASSERT_TRUE(store().Put("keep", "1").ok());
  const absl::Status bad_key =
      store().Commit({PutOp("x", "1"), DeleteOp("keep"), PutOp("", "2")});
  EXPECT_EQ(bad_key.code(), absl::StatusCode::kInvalidArgument);
  const absl::Status bad_value =
      store().Commit({PutOp("x", "1"), DeleteOp("keep"),
                      PutOp("y", std::string(kMaxValueBytes + 1, 'v'))});
  EXPECT_EQ(bad_value.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store().List("").value_or(KeyValues{}),
              ElementsAre(Pair("keep", "1")));
}

TEST_P(StoreConformanceTest, KeyLimits) {
  EXPECT_EQ(store().Put("", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().Delete("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().Get("").status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string max_key(kMaxKeyBytes, 'k');
  EXPECT_TRUE(store().Put(max_key, "v").ok());
  EXPECT_EQ(store().Get(max_key).value_or(""), "v");

  const std::string long_key(kMaxKeyBytes + 1, 'k');
  const absl::Status status = store().Put(long_key, "v");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("1024"));
  EXPECT_EQ(store().Delete(long_key).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().Get(long_key).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().List(long_key).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreConformanceTest, ValueLimits) {
  const std::string max_value(kMaxValueBytes, 'v');
  ASSERT_TRUE(store().Put("max", max_value).ok());
  EXPECT_EQ(store().Get("max").value_or("").size(), kMaxValueBytes);

  const absl::Status status =
      store().Put("big", std::string(kMaxValueBytes + 1, 'v'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(kMaxValueBytes)));
  EXPECT_EQ(store().Get("big").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, CommitSizeLimit) {
  std::vector<StoreMutation> mutations;
  for (size_t total = 0; total <= kMaxCommitBytes; total += kMaxValueBytes) {
    mutations.push_back(PutOp(absl::StrCat("k", mutations.size()),
                              std::string(kMaxValueBytes, 'v')));
  }
  const absl::Status status = store().Commit(mutations);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(kMaxCommitBytes)));
  EXPECT_THAT(store().List("").value_or(KeyValues{{"x", "x"}}), IsEmpty());
}

// Several writer threads, some committing pairs of keys that a reader must
// only ever see together.
TEST_P(StoreConformanceTest, ConcurrentWritersAndAtomicVisibility) {
  constexpr int kPutThreads = 4;
  constexpr int kPutsPerThread = 25;
  constexpr int kPairThreads = 2;
  constexpr int kPairRounds = 20;

  std::atomic<int> writers_left{kPutThreads + kPairThreads};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kPutThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPutsPerThread; ++i) {
        if (!store()
                 .Put(absl::StrCat("put/", t, "/", i),
                      absl::StrCat(t * 1000 + i))
                 .ok()) {
          failed = true;
        }
      }
      --writers_left;
    });
  }
  for (int t = 0; t < kPairThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string a = absl::StrCat("pair/", t, "/a");
      const std::string b = absl::StrCat("pair/", t, "/b");
      for (int round = 0; round < kPairRounds; ++round) {
        const std::string v = absl::StrCat(round);
        absl::Status status = round % 3 == 2
                                  ? store().Commit({DeleteOp(a), DeleteOp(b)})
                                  : store().Commit({PutOp(a, v), PutOp(b, v)});
        if (!status.ok()) failed = true;
      }
      --writers_left;
    });
  }

  int torn_views = 0;
  int reads = 0;
  do {
    absl::StatusOr<KeyValues> pairs = store().List("pair/");
    if (!pairs.ok()) {  // no ASSERT: the writer threads must be joined
      failed = true;
      continue;
    }
    std::map<std::string, std::string> seen(pairs->begin(), pairs->end());
    for (int t = 0; t < kPairThreads; ++t) {
      auto a = seen.find(absl::StrCat("pair/", t, "/a"));
      auto b = seen.find(absl::StrCat("pair/", t, "/b"));
      const bool has_a = a != seen.end();
      const bool has_b = b != seen.end();
      if (has_a != has_b || (has_a && a->second != b->second)) ++torn_views;
    }
    ++reads;
  } while (writers_left > 0);
  for (std::thread& thread : threads) thread.join();

  EXPECT_FALSE(failed);
  EXPECT_EQ(torn_views, 0) << "in " << reads << " reads";
  for (int t = 0; t < kPutThreads; ++t) {
    for (int i = 0; i < kPutsPerThread; ++i) {
      EXPECT_EQ(store().Get(absl::StrCat("put/", t, "/", i)).value_or(""),
                absl::StrCat(t * 1000 + i));
    }
  }
  EXPECT_EQ(store().List("put/").value_or(KeyValues{}).size(),
            kPutThreads * kPutsPerThread);
  // Round kPairRounds - 1 = 19 is a put (19 % 3 == 1).
  for (int t = 0; t < kPairThreads; ++t) {
    EXPECT_EQ(store().Get(absl::StrCat("pair/", t, "/a")).value_or(""), "19");
    EXPECT_EQ(store().Get(absl::StrCat("pair/", t, "/b")).value_or(""), "19");
  }
}

}  // namespace

void StoreConformanceTest::SetUp() {
  absl::StatusOr<std::unique_ptr<Store>> store = GetParam().make_store();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
}

void PrintTo(const StoreConformanceParam& param, std::ostream* os) {
  *os << param.name;
}

std::string StoreConformanceParamName(
    const ::testing::TestParamInfo<StoreConformanceParam>& info) {
  return info.param.name;
}

}  // namespace joule
