#include "scheduler/store/etcd_store.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/etcd/etcd_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/store/store_conformance.h"
#include "tests/etcd/etcd_server.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

// One real etcd for the whole binary; every store gets its own prefix, so
// each test starts from an empty store.
struct SharedEtcd {
  std::unique_ptr<etcd::EtcdServer> server;
  std::unique_ptr<etcd::EtcdClient> client;
  int next_prefix = 0;
};

absl::StatusOr<SharedEtcd*> GetEtcd() {
  static SharedEtcd* shared = nullptr;
  static absl::Status failure;
  if (shared != nullptr) return shared;
  if (!failure.ok()) return failure;
  const char* tmp = std::getenv("TEST_TMPDIR");
  absl::StatusOr<std::unique_ptr<etcd::EtcdServer>> server = etcd::EtcdServer::Start(
      absl::StrCat(tmp == nullptr ? "/tmp" : tmp, "/etcd-store-test"), {});
  if (!server.ok()) {
    failure = server.status();
    return failure;
  }
  etcd::EtcdOptions options;
  options.endpoints = {(*server)->endpoint()};
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
      etcd::EtcdClient::Connect(options);
  if (!client.ok()) {
    failure = client.status();
    return failure;
  }
  shared = new SharedEtcd{*std::move(server), *std::move(client)};
  return shared;
}

absl::StatusOr<std::unique_ptr<Store>> MakeStore() {
  absl::StatusOr<SharedEtcd*> etcd = GetEtcd();
  if (!etcd.ok()) return etcd.status();
  return std::make_unique<EtcdStore>(
      (*etcd)->client.get(), absl::StrCat("/conformance-", (*etcd)->next_prefix++, "/"));
}

INSTANTIATE_TEST_SUITE_P(EtcdStore, StoreConformanceTest,
                         ::testing::Values(StoreConformanceParam{"EtcdStore", MakeStore}),
                         StoreConformanceParamName);

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SharedEtcd*> etcd = GetEtcd();
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *etcd;
    prefix_ = absl::StrCat("/fence-", etcd_->next_prefix++, "/");
  }

  // Creates `key` under a fresh lease and returns its create revision.
  int64_t CreateLeaderKey(const std::string& key, int64_t* lease_id) {
    absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease =
        etcd_->client->LeaseGrant(30);
    EXPECT_TRUE(lease.ok()) << lease.status();
    *lease_id = lease.ok() ? lease->id() : 0;
    etcdserverpb::PutRequest put;
    put.set_key(key);
    put.set_value("scheduler-a");
    put.set_lease(*lease_id);
    absl::StatusOr<etcdserverpb::PutResponse> response = etcd_->client->Put(put);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->header().revision() : 0;
  }

  SharedEtcd* etcd_ = nullptr;
  std::string prefix_;
};

TEST_F(EtcdStoreTest, KeysLiveUnderThePrefix) {
  EtcdStore store(etcd_->client.get(), prefix_);
  ASSERT_TRUE(store.Put("jobs/job-1", "v").ok());
  etcdserverpb::RangeRequest range;
  range.set_key(absl::StrCat(prefix_, "jobs/job-1"));
  absl::StatusOr<etcdserverpb::RangeResponse> response = etcd_->client->Range(range);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->kvs_size(), 1);
  EXPECT_EQ(response->kvs(0).value(), "v");
  // Another prefix sees nothing of it.
  EtcdStore other(etcd_->client.get(), absl::StrCat(prefix_, "other/"));
  EXPECT_TRUE(other.List("").value().empty());
}

TEST_F(EtcdStoreTest, ListPagesThroughManyKeysInOrder) {
  EtcdStore store(etcd_->client.get(), prefix_);
  std::vector<StoreMutation> mutations;
  for (int i = 0; i < 300; ++i) {
    mutations.push_back({StoreMutation::Op::kPut, absl::StrFormat("k/%04d", i),
                         absl::StrCat(i)});
  }
  ASSERT_TRUE(store.Commit(mutations).ok());
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> listed =
      store.List("k/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 300u);
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ((*listed)[i].first, absl::StrFormat("k/%04d", i));
    EXPECT_EQ((*listed)[i].second, absl::StrCat(i));
  }
}

TEST_F(EtcdStoreTest, FencedWritesSucceedWhileTheLeaderKeyIsOurs) {
  EtcdStore store(etcd_->client.get(), prefix_);
  int64_t lease = 0;
  const std::string leader_key = absl::StrCat(prefix_, "leader/a");
  const int64_t revision = CreateLeaderKey(leader_key, &lease);
  bool fenced = false;
  store.SetFence(leader_key, revision, [&](const absl::Status&) { fenced = true; });
  EXPECT_TRUE(store.Put("jobs/job-1", "v1").ok());
  EXPECT_TRUE(store.Commit({{StoreMutation::Op::kPut, "a", "1"},
                            {StoreMutation::Op::kDelete, "jobs/job-1", ""}})
                  .ok());
  EXPECT_FALSE(fenced);
}

TEST_F(EtcdStoreTest, DeposedLeaderCannotWrite) {
  EtcdStore store(etcd_->client.get(), prefix_);
  int64_t lease = 0;
  const std::string leader_key = absl::StrCat(prefix_, "leader/a");
  const int64_t revision = CreateLeaderKey(leader_key, &lease);
  int fenced_calls = 0;
  store.SetFence(leader_key, revision,
                 [&](const absl::Status&) { ++fenced_calls; });
  ASSERT_TRUE(store.Put("jobs/job-1", "before").ok());

  // The lease ends (as when the leader was paused past its TTL) and another
  // scheduler creates the leader key again.
  ASSERT_TRUE(etcd_->client->LeaseRevoke(lease).ok());
  int64_t other_lease = 0;
  CreateLeaderKey(leader_key, &other_lease);

  absl::Status put = store.Put("jobs/job-1", "after");
  EXPECT_EQ(put.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(put.message(), HasSubstr("fenced"));
  EXPECT_EQ(fenced_calls, 1);
  EXPECT_EQ(store.Delete("jobs/job-1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Commit({{StoreMutation::Op::kPut, "x", "1"}}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fenced_calls, 1) << "on_fenced runs once";

  // Nothing changed: an unfenced reader sees the value from before.
  EtcdStore reader(etcd_->client.get(), prefix_);
  EXPECT_EQ(reader.Get("jobs/job-1").value_or(""), "before");
  EXPECT_EQ(reader.Get("x").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EtcdStoreTest, RepeatedKeysInOneCommitCollapseToTheLast) {
  EtcdStore store(etcd_->client.get(), prefix_);
  ASSERT_TRUE(store.Commit({{StoreMutation::Op::kPut, "k", "1"},
                            {StoreMutation::Op::kDelete, "k", ""},
                            {StoreMutation::Op::kPut, "k", "3"},
                            {StoreMutation::Op::kPut, "j", "1"},
                            {StoreMutation::Op::kDelete, "j", ""}})
                  .ok());
  EXPECT_EQ(store.Get("k").value_or(""), "3");
  EXPECT_EQ(store.Get("j").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EtcdStoreTest, UnreachableEtcdIsUnavailableNotOk) {
  etcd::EtcdOptions options;
  options.endpoints = {"127.0.0.1:1"};
  options.rpc_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
      etcd::EtcdClient::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EtcdStore store(client->get(), prefix_);
  const absl::Status put = store.Put("k", "v");
  EXPECT_FALSE(put.ok());
  EXPECT_FALSE(store.Get("k").ok());
}

}  // namespace
}  // namespace joule
