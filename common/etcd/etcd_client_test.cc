#include "common/etcd/etcd_client.h"

#include <signal.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/etcd/etcd_server.h"

namespace joule::etcd {
namespace {

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = absl::Seconds(10)) {
  const absl::Duration poll = absl::Milliseconds(20);
  for (int64_t i = timeout / poll; i > 0; --i) {
    if (condition()) return true;
    absl::SleepFor(poll);
  }
  return condition();
}

// A directory of this test's own under TEST_TMPDIR.
std::string TestDir() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "/", info->test_suite_name(), ".",
                      info->name());
}

absl::Status Put(EtcdClient& client, const std::string& key, const std::string& value,
                 int64_t lease = 0) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  return client.Put(request).status();
}

absl::Status Delete(EtcdClient& client, const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  return client.DeleteRange(request).status();
}

// The value of `key`; NOT_FOUND when it is absent.
absl::StatusOr<std::string> Get(EtcdClient& client, const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  absl::StatusOr<etcdserverpb::RangeResponse> response = client.Range(request);
  if (!response.ok()) return response.status();
  if (response->kvs_size() == 0) return absl::NotFoundError(key);
  return response->kvs(0).value();
}

absl::StatusOr<int64_t> CountPrefix(EtcdClient& client, const std::string& prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixRangeEnd(prefix));
  request.set_count_only(true);
  absl::StatusOr<etcdserverpb::RangeResponse> response = client.Range(request);
  if (!response.ok()) return response.status();
  return response->count();
}

// ---------------------------------------------------------------------------
// Pure functions.

TEST(ParseEtcdUrlTest, AcceptsGoodUrls) {
  struct Case {
    std::string url;
    std::vector<std::string> endpoints;
    std::string prefix;
    bool tls;
  };
  const std::vector<Case> cases = {
      {"etcd://127.0.0.1:2379", {"127.0.0.1:2379"}, "/joule/", false},
      {"etcd://127.0.0.1:2379/", {"127.0.0.1:2379"}, "/joule/", false},
      {"etcds://a:1,b:2,c:65535/x", {"a:1", "b:2", "c:65535"}, "/x/", true},
      {"etcd://h:1/x/y/", {"h:1"}, "/x/y/", false},
      {"ETCDS://h:2379/joule-prod", {"h:2379"}, "/joule-prod/", true},
      {"etcd://[::1]:2379/p", {"[::1]:2379"}, "/p/", false},
      {"etcd://etcd-0.etcd.svc:2379,etcd-1.etcd.svc:2379",
       {"etcd-0.etcd.svc:2379", "etcd-1.etcd.svc:2379"},
       "/joule/",
       false},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EtcdUrl> url = ParseEtcdUrl(c.url);
    ASSERT_TRUE(url.ok()) << c.url << ": " << url.status();
    EXPECT_EQ(url->endpoints, c.endpoints) << c.url;
    EXPECT_EQ(url->prefix, c.prefix) << c.url;
    EXPECT_EQ(url->tls, c.tls) << c.url;
  }
}

TEST(ParseEtcdUrlTest, RejectsBadUrlsNamingTheProblem) {
  struct Case {
    std::string url;
    std::string problem;  // a word the error must contain
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"127.0.0.1:2379", "missing scheme"},
      {"http://127.0.0.1:2379", "unknown scheme"},
      {"etcd://", "no endpoints"},
      {"etcd:///joule", "no endpoints"},
      {"etcd://a:1,,b:2", "empty endpoint"},
      {"etcd://a:1,", "empty endpoint"},
      {"etcd://localhost", "no port"},
      {"etcd://localhost:", "empty port"},
      {"etcd://:2379", "empty host"},
      {"etcd://h:abc", "not a number"},
      {"etcd://h:-1", "not a number"},
      {"etcd://h:0", "out of range"},
      {"etcd://h:65536", "out of range"},
      {"etcd://h:99999999999", "out of range"},
      {"etcd://::1:2379", "IPv6"},
      {"etcd://[::1/x", "unterminated"},
      {"etcd://h:1?x=y", "query"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EtcdUrl> url = ParseEtcdUrl(c.url);
    ASSERT_FALSE(url.ok()) << c.url;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_TRUE(absl::StrContains(url.status().message(), c.problem))
        << c.url << ": " << url.status();
  }
}

TEST(PrefixRangeEndTest, IncrementsTheLastByteBelowFf) {
  const std::string kNul(1, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a", "b"},
      {"/joule/", "/joule0"},
      {"ab\xfe", "ab\xff"},
      {"a\xff", "b"},
      {"a\xff\xff", "b"},
      {std::string("a\0", 2), std::string("a\1", 2)},
      {"\xff", kNul},
      {"\xff\xff", kNul},
      {"", kNul},
  };
  for (const auto& [prefix, end] : cases) {
    EXPECT_EQ(PrefixRangeEnd(prefix), end) << absl::CEscape(prefix);
  }
}

TEST(EtcdClientConnectTest, RejectsBadOptions) {
  EtcdOptions none;
  EXPECT_EQ(EtcdClient::Connect(none).status().code(),
            absl::StatusCode::kInvalidArgument);

  EtcdOptions half_cert;
  half_cert.endpoints = {"127.0.0.1:1"};
  half_cert.tls = true;
  half_cert.cert_file = "client.pem";
  EXPECT_EQ(EtcdClient::Connect(half_cert).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EtcdClientConnectTest, UnreadableCaFileIsNamed) {
  EtcdOptions options;
  options.endpoints = {"127.0.0.1:1"};
  options.tls = true;
  options.ca_file = TestDir() + "/no-such-ca.pem";
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(client.status().message(), options.ca_file))
      << client.status();
}

// ---------------------------------------------------------------------------
// Against a real etcd, one per test.

class EtcdClientTest : public ::testing::Test {
 protected:
  void StartEtcd(EtcdServerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<EtcdServer>> server =
        EtcdServer::Start(TestDir() + "/etcd-data", std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::StatusOr<std::unique_ptr<EtcdClient>> client =
        EtcdClient::Connect(server_->ClientOptions());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdClientTest, PutRangeDeleteRange) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  ASSERT_TRUE(Put(*client_, "/a", "1").ok());
  ASSERT_TRUE(Put(*client_, "/b", "2").ok());
  ASSERT_TRUE(Put(*client_, "/c/x", "3").ok());
  ASSERT_TRUE(Put(*client_, "/d", "outside").ok());

  absl::StatusOr<std::string> a = Get(*client_, "/a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "1");

  etcdserverpb::RangeRequest range;
  range.set_key("/a");
  range.set_range_end("/d");
  absl::StatusOr<etcdserverpb::RangeResponse> listed = client_->Range(range);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->kvs_size(), 3);
  EXPECT_EQ(listed->kvs(0).key(), "/a");
  EXPECT_EQ(listed->kvs(1).key(), "/b");
  EXPECT_EQ(listed->kvs(2).key(), "/c/x");
  EXPECT_GT(listed->header().revision(), 0);

  etcdserverpb::PutRequest overwrite;
  overwrite.set_key("/a");
  overwrite.set_value("1b");
  overwrite.set_prev_kv(true);
  absl::StatusOr<etcdserverpb::PutResponse> put = client_->Put(overwrite);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->prev_kv().value(), "1");

  etcdserverpb::DeleteRangeRequest remove;
  remove.set_key("/c/");
  remove.set_range_end(PrefixRangeEnd("/c/"));
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> deleted = client_->DeleteRange(remove);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted(), 1);
  EXPECT_EQ(Get(*client_, "/c/x").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<int64_t> count = CountPrefix(*client_, "/");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3);
}

TEST_F(EtcdClientTest, TxnTakesTheBranchItsComparesChoose) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  // Create "/lock" only if it does not exist; otherwise read it.
  etcdserverpb::TxnRequest create;
  etcdserverpb::Compare* absent = create.add_compare();
  absent->set_key("/lock");
  absent->set_target(etcdserverpb::Compare::CREATE);
  absent->set_result(etcdserverpb::Compare::EQUAL);
  absent->set_create_revision(0);
  etcdserverpb::PutRequest* put = create.add_success()->mutable_request_put();
  put->set_key("/lock");
  put->set_value("a");
  create.add_failure()->mutable_request_range()->set_key("/lock");

  absl::StatusOr<etcdserverpb::TxnResponse> first = client_->Txn(create);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded());
  const int64_t created_at = first->header().revision();

  put->set_value("b");
  absl::StatusOr<etcdserverpb::TxnResponse> second = client_->Txn(create);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded());
  ASSERT_EQ(second->responses_size(), 1);
  ASSERT_EQ(second->responses(0).response_range().kvs_size(), 1);
  const mvccpb::KeyValue& held = second->responses(0).response_range().kvs(0);
  EXPECT_EQ(held.value(), "a");
  EXPECT_EQ(held.create_revision(), created_at);

  // A write fenced on the creation revision passes while it holds...
  etcdserverpb::TxnRequest fenced;
  etcdserverpb::Compare* fence = fenced.add_compare();
  fence->set_key("/lock");
  fence->set_target(etcdserverpb::Compare::CREATE);
  fence->set_result(etcdserverpb::Compare::EQUAL);
  fence->set_create_revision(created_at);
  etcdserverpb::PutRequest* data = fenced.add_success()->mutable_request_put();
  data->set_key("/data");
  data->set_value("v1");
  absl::StatusOr<etcdserverpb::TxnResponse> allowed = client_->Txn(fenced);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_TRUE(allowed->succeeded());

  // ...and changes nothing once the key was recreated.
  ASSERT_TRUE(Delete(*client_, "/lock").ok());
  ASSERT_TRUE(Put(*client_, "/lock", "c").ok());
  data->set_value("v2");
  absl::StatusOr<etcdserverpb::TxnResponse> refused = client_->Txn(fenced);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->succeeded());
  EXPECT_EQ(*Get(*client_, "/data"), "v1");
}

TEST_F(EtcdClientTest, CarriesSixteenMibValues) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  const std::string big(16 << 20, 'x');
  absl::Status put = Put(*client_, "/big", big);
  ASSERT_TRUE(put.ok()) << put;
  absl::StatusOr<std::string> value = Get(*client_, "/big");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->size(), big.size());
}

TEST_F(EtcdClientTest, LeaseGrantTimeToLiveRevoke) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client_->LeaseGrant(30);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->id(), 0);
  EXPECT_EQ(lease->ttl(), 30);
  ASSERT_TRUE(Put(*client_, "/leased", "v", lease->id()).ok());

  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> ttl =
      client_->LeaseTimeToLive(lease->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(ttl->grantedttl(), 30);
  EXPECT_GT(ttl->ttl(), 0);
  EXPECT_LE(ttl->ttl(), 30);

  absl::StatusOr<int64_t> renewed = client_->LeaseKeepAliveOnce(lease->id());
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, 30);

  ASSERT_TRUE(client_->LeaseRevoke(lease->id()).ok());
  EXPECT_EQ(Get(*client_, "/leased").status().code(), absl::StatusCode::kNotFound);
  ttl = client_->LeaseTimeToLive(lease->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(ttl->ttl(), -1);
  EXPECT_EQ(client_->LeaseRevoke(lease->id()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->LeaseKeepAliveOnce(lease->id()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EtcdClientTest, KeepAliveOfExpiredLeaseIsNotFound) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client_->LeaseGrant(1);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> ttl =
        client_->LeaseTimeToLive(lease->id());
    return ttl.ok() && ttl->ttl() == -1;
  }));
  absl::StatusOr<int64_t> renewed = client_->LeaseKeepAliveOnce(lease->id());
  EXPECT_EQ(renewed.status().code(), absl::StatusCode::kNotFound) << renewed.status();
}

TEST_F(EtcdClientTest, LeaseKeeperKeepsLeaseAlive) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client_->LeaseGrant(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(Put(*client_, "/alive", "v", lease->id()).ok());
  int lost = 0;
  {
    LeaseKeeper keeper(client_.get(), RealClock::Get(), lease->id(), 2,
                       [&](const absl::Status&) { ++lost; });
    // Two and a half TTLs: without the keeper the lease would be gone.
    absl::SleepFor(absl::Seconds(5));
    EXPECT_FALSE(keeper.lost());
    EXPECT_TRUE(Get(*client_, "/alive").ok());
    absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> ttl =
        client_->LeaseTimeToLive(lease->id());
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_GT(ttl->ttl(), 0);
  }
  EXPECT_EQ(lost, 0);
}

TEST_F(EtcdClientTest, LeaseKeeperReportsLossWhileEtcdIsStopped) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client_->LeaseGrant(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  absl::Mutex mu;
  int lost = 0;
  absl::Status why;
  LeaseKeeper keeper(client_.get(), RealClock::Get(), lease->id(), 2,
                     [&](const absl::Status& status) {
    absl::MutexLock lock(&mu);
    ++lost;
    why = status;
  });
  ASSERT_TRUE(WaitFor([&] { return client_->LeaseKeepAliveOnce(lease->id()).ok(); }));
  ASSERT_TRUE(server_->Kill(SIGSTOP).ok());
  // The last keep-alive went out at most a third of the TTL before the stop,
  // so the keeper must give up within about the TTL (2 s).
  const bool gave_up = WaitFor([&] { return keeper.lost(); }, absl::Seconds(5));
  ASSERT_TRUE(server_->Kill(SIGCONT).ok());
  ASSERT_TRUE(gave_up);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(lost, 1);
  EXPECT_EQ(why.code(), absl::StatusCode::kDeadlineExceeded) << why;
}

TEST_F(EtcdClientTest, ElectionHasOneLeaderAtATime) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  const std::string election = "/joule/election/scheduler";
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_a = client_->LeaseGrant(30);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_b = client_->LeaseGrant(30);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());

  EXPECT_EQ(client_->Leader(election).status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<v3electionpb::CampaignResponse> a =
      client_->Campaign(election, lease_a->id(), "a", absl::Seconds(5));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->leader().name(), election);
  EXPECT_GT(a->leader().rev(), 0);

  // B cannot win while A leads; its candidacy is withdrawn when it gives up.
  absl::StatusOr<v3electionpb::CampaignResponse> b =
      client_->Campaign(election, lease_b->id(), "b", absl::Milliseconds(500));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDeadlineExceeded) << b.status();
  EXPECT_TRUE(WaitFor([&] {
    absl::StatusOr<int64_t> candidates = CountPrefix(*client_, election + "/");
    return candidates.ok() && *candidates == 1;
  }));

  absl::StatusOr<v3electionpb::LeaderResponse> leader = client_->Leader(election);
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->kv().value(), "a");
  EXPECT_EQ(leader->kv().key(), a->leader().key());
  EXPECT_EQ(leader->kv().create_revision(), a->leader().rev());

  ASSERT_TRUE(client_->Proclaim(a->leader(), "a2").ok());
  leader = client_->Leader(election);
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->kv().value(), "a2");

  ASSERT_TRUE(client_->Resign(a->leader()).ok());
  EXPECT_EQ(client_->Leader(election).status().code(), absl::StatusCode::kNotFound);

  // A leads again; B waits, and wins once A's lease ends.
  a = client_->Campaign(election, lease_a->id(), "a", absl::Seconds(5));
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<v3electionpb::CampaignResponse> b_result =
      absl::UnknownError("not run");
  std::thread candidate_b([&] {
    b_result = client_->Campaign(election, lease_b->id(), "b", absl::Seconds(10));
  });
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<int64_t> candidates = CountPrefix(*client_, election + "/");
    return candidates.ok() && *candidates == 2;
  }));
  EXPECT_TRUE(client_->LeaseRevoke(lease_a->id()).ok());
  candidate_b.join();
  ASSERT_TRUE(b_result.ok()) << b_result.status();
  leader = client_->Leader(election);
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->kv().value(), "b");

  // The old leader's key no longer proves anything.
  EXPECT_FALSE(client_->Proclaim(a->leader(), "stale").ok());
  leader = client_->Leader(election);
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->kv().value(), "b");
}

TEST_F(EtcdClientTest, ObserveFollowsTheLeaderUntilTold) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  const std::string election = "/joule/election/observed";
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_a = client_->LeaseGrant(30);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_b = client_->LeaseGrant(30);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  absl::StatusOr<v3electionpb::CampaignResponse> a =
      client_->Campaign(election, lease_a->id(), "a", absl::Seconds(5));
  ASSERT_TRUE(a.ok()) << a.status();

  absl::Mutex mu;
  std::vector<std::string> seen;
  absl::Status observed = absl::UnknownError("not run");
  std::thread observer([&] {
    observed = client_->Observe(election, absl::Seconds(20),
                                [&](const v3electionpb::LeaderResponse& leader) {
                                  absl::MutexLock lock(&mu);
                                  seen.push_back(leader.kv().value());
                                  return leader.kv().value() != "b";
                                });
  });
  auto seen_count = [&] {
    absl::MutexLock lock(&mu);
    return seen.size();
  };
  ASSERT_TRUE(WaitFor([&] { return seen_count() >= 1; }));
  ASSERT_TRUE(client_->Proclaim(a->leader(), "a2").ok());
  ASSERT_TRUE(WaitFor([&] { return seen_count() >= 2; }));
  // A's lease ends; B wins; the callback stops the stream at "b".
  ASSERT_TRUE(client_->LeaseRevoke(lease_a->id()).ok());
  ASSERT_TRUE(client_->Campaign(election, lease_b->id(), "b", absl::Seconds(5)).ok());
  observer.join();
  EXPECT_TRUE(observed.ok()) << observed;
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ::testing::ElementsAre("a", "a2", "b"));
}

TEST_F(EtcdClientTest, CancelCampaignsEndsBlockedElectionCalls) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  const std::string election = "/joule/election/cancelled";
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_a = client_->LeaseGrant(30);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease_b = client_->LeaseGrant(30);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  ASSERT_TRUE(client_->Campaign(election, lease_a->id(), "a", absl::Seconds(5)).ok());
  absl::StatusOr<v3electionpb::CampaignResponse> b = absl::UnknownError("not run");
  std::thread candidate([&] {
    b = client_->Campaign(election, lease_b->id(), "b", absl::Hours(1));
  });
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<int64_t> candidates = CountPrefix(*client_, election + "/");
    return candidates.ok() && *candidates == 2;
  }));
  const absl::Time cancelled = absl::Now();
  client_->CancelCampaigns();
  candidate.join();
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(5));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kCancelled) << b.status();
  // Later calls are refused at once.
  EXPECT_EQ(client_->Campaign(election, lease_b->id(), "b", absl::Hours(1)).status().code(),
            absl::StatusCode::kCancelled);
}

// Collects what an EtcdWatch reports.
struct WatchRecorder {
  EtcdWatch::ResetFn OnReset() {
    return [this](const std::vector<std::pair<std::string, std::string>>& snapshot,
                  int64_t revision) {
      absl::MutexLock lock(&mu);
      ++resets;
      this->snapshot = snapshot;
      revisions.push_back(revision);
    };
  }
  EtcdWatch::EventsFn OnEvents() {
    return [this](const std::vector<WatchEvent>& batch, int64_t revision) {
      absl::MutexLock lock(&mu);
      if (batch.empty()) ++progress;
      events.insert(events.end(), batch.begin(), batch.end());
      revisions.push_back(revision);
    };
  }
  int Resets() {
    absl::MutexLock lock(&mu);
    return resets;
  }
  size_t EventCount() {
    absl::MutexLock lock(&mu);
    return events.size();
  }
  bool SawPut(const std::string& key) {
    absl::MutexLock lock(&mu);
    for (const WatchEvent& event : events) {
      if (event.type == WatchEvent::Type::kPut && event.key == key) return true;
    }
    return false;
  }

  absl::Mutex mu;
  int resets = 0;
  int progress = 0;
  std::vector<std::pair<std::string, std::string>> snapshot;
  std::vector<WatchEvent> events;
  std::vector<int64_t> revisions;  // every revision reported, in order
};

TEST_F(EtcdClientTest, WatchDeliversSnapshotThenEventsInOrder) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  ASSERT_TRUE(Put(*client_, "/w/a", "1").ok());
  ASSERT_TRUE(Put(*client_, "/w/c", "3").ok());
  ASSERT_TRUE(Put(*client_, "/x", "elsewhere").ok());

  WatchRecorder recorder;
  EtcdWatch watch(client_.get(), "/w/", recorder.OnReset(), recorder.OnEvents());
  ASSERT_TRUE(WaitFor([&] { return recorder.Resets() == 1; }));
  {
    absl::MutexLock lock(&recorder.mu);
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"/w/a", "1"}, {"/w/c", "3"}};
    EXPECT_EQ(recorder.snapshot, expected);
  }

  ASSERT_TRUE(Put(*client_, "/w/b", "2").ok());
  ASSERT_TRUE(Put(*client_, "/x", "still elsewhere").ok());
  ASSERT_TRUE(Delete(*client_, "/w/a").ok());
  ASSERT_TRUE(Put(*client_, "/w/b", "2b").ok());
  ASSERT_TRUE(WaitFor([&] { return recorder.EventCount() >= 3; }));

  watch.RequestProgress();
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&recorder.mu);
    return recorder.progress > 0;
  }));

  absl::MutexLock lock(&recorder.mu);
  ASSERT_EQ(recorder.events.size(), 3u);
  EXPECT_EQ(recorder.events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(recorder.events[0].key, "/w/b");
  EXPECT_EQ(recorder.events[0].value, "2");
  EXPECT_EQ(recorder.events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(recorder.events[1].key, "/w/a");
  EXPECT_EQ(recorder.events[1].value, "");
  EXPECT_EQ(recorder.events[2].type, WatchEvent::Type::kPut);
  EXPECT_EQ(recorder.events[2].key, "/w/b");
  EXPECT_EQ(recorder.events[2].value, "2b");
  EXPECT_LT(recorder.events[0].mod_revision, recorder.events[1].mod_revision);
  EXPECT_LT(recorder.events[1].mod_revision, recorder.events[2].mod_revision);
  EXPECT_TRUE(std::is_sorted(recorder.revisions.begin(), recorder.revisions.end()));
  EXPECT_GE(recorder.revisions.back(), recorder.events[2].mod_revision);
  EXPECT_EQ(recorder.resets, 1);
}

TEST_F(EtcdClientTest, WatchResumesAfterEtcdRestart) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  WatchRecorder recorder;
  EtcdWatch watch(client_.get(), "/w/", recorder.OnReset(), recorder.OnEvents());
  ASSERT_TRUE(WaitFor([&] { return recorder.Resets() == 1; }));
  ASSERT_TRUE(Put(*client_, "/w/before", "1").ok());
  ASSERT_TRUE(WaitFor([&] { return recorder.SawPut("/w/before"); }));

  absl::Status restarted = server_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  // The first calls may still find the old connection broken.
  ASSERT_TRUE(WaitFor([&] { return Put(*client_, "/w/after", "2").ok(); }));
  EXPECT_TRUE(WaitFor([&] { return recorder.SawPut("/w/after"); }, absl::Seconds(15)));
  // Nothing was compacted, so the watch resumed instead of reloading.
  EXPECT_EQ(recorder.Resets(), 1);
  absl::MutexLock lock(&recorder.mu);
  ASSERT_FALSE(recorder.events.empty());
  EXPECT_EQ(recorder.events.front().key, "/w/before");
}

TEST_F(EtcdClientTest, FailsOverToTheEndpointThatAnswers) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<int> dead_port = PickUnusedLoopbackPort();
  ASSERT_TRUE(dead_port.ok()) << dead_port.status();
  const std::string dead = absl::StrCat("127.0.0.1:", *dead_port);

  EtcdOptions options = server_->ClientOptions();
  options.endpoints = {dead, server_->endpoint()};
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::Status put = Put(**client, "/k", "v");
  ASSERT_TRUE(put.ok()) << put;
  absl::StatusOr<std::string> value = Get(**client, "/k");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "v");

  // When none answers, the error says so.
  absl::StatusOr<int> other_dead_port = PickUnusedLoopbackPort();
  ASSERT_TRUE(other_dead_port.ok());
  options.endpoints = {dead, absl::StrCat("127.0.0.1:", *other_dead_port)};
  client = EtcdClient::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> unreachable = Get(**client, "/k");
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(unreachable.status().message(), dead))
      << unreachable.status();
}

TEST_F(EtcdClientTest, AuthSendsTokenAndRefusesOthers) {
  ASSERT_NO_FATAL_FAILURE(StartEtcd());
  absl::StatusOr<std::string> added =
      server_->Etcdctl({"user", "add", "root:secret", "--interactive=false"});
  ASSERT_TRUE(added.ok()) << added.status();
  absl::StatusOr<std::string> enabled = server_->Etcdctl({"auth", "enable"});
  ASSERT_TRUE(enabled.ok()) << enabled.status();

  EtcdOptions options = server_->ClientOptions();
  options.username = "root";
  options.password = "secret";
  absl::StatusOr<std::unique_ptr<EtcdClient>> root = EtcdClient::Connect(options);
  ASSERT_TRUE(root.ok()) << root.status();
  absl::Status put = Put(**root, "/secret", "v");
  ASSERT_TRUE(put.ok()) << put;
  absl::StatusOr<std::string> value = Get(**root, "/secret");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "v");

  // Without credentials etcd refuses the call.
  absl::StatusOr<std::string> anonymous = Get(*client_, "/secret");
  EXPECT_FALSE(anonymous.ok());
  EXPECT_NE(anonymous.status().code(), absl::StatusCode::kUnavailable)
      << anonymous.status();

  // A wrong password fails at Connect.
  options.password = "wrong";
  absl::StatusOr<std::unique_ptr<EtcdClient>> intruder = EtcdClient::Connect(options);
  ASSERT_FALSE(intruder.ok());
  EXPECT_TRUE(absl::StrContains(intruder.status().message(), "Authenticate"))
      << intruder.status();

  // etcd forgets its simple tokens when it restarts; the client
  // authenticates again by itself.
  absl::Status restarted = server_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE(WaitFor([&] { return Get(**root, "/secret").ok(); }));
}

TEST_F(EtcdClientTest, TlsWithCaWorksAndPlaintextFails) {
  const std::string dir = TestDir() + "/tls";
  ASSERT_TRUE(MakeDirectories(dir).ok());
  const std::string ca_key = dir + "/ca.key";
  const std::string ca_cert = dir + "/ca.crt";
  const std::string key = dir + "/server.key";
  const std::string csr = dir + "/server.csr";
  const std::string cert = dir + "/server.crt";
  const std::string extensions = dir + "/server.ext";
  {
    std::ofstream out(extensions);
    out << "subjectAltName=IP:127.0.0.1\n"
        << "extendedKeyUsage=serverAuth\n";
  }
  const std::vector<std::vector<std::string>> commands = {
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key, "-out", ca_cert,
       "-days", "2", "-subj", "/CN=joule-test-ca"},
      {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
       "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
       "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions},
  };
  for (const std::vector<std::string>& command : commands) {
    absl::StatusOr<std::string> ran = RunProgram(command);
    ASSERT_TRUE(ran.ok()) << ran.status();
  }

  EtcdServerOptions server_options;
  server_options.tls = true;
  server_options.cert_file = cert;
  server_options.key_file = key;
  server_options.ca_file = ca_cert;
  ASSERT_NO_FATAL_FAILURE(StartEtcd(server_options));
  EXPECT_TRUE(client_->options().tls);
  absl::Status put = Put(*client_, "/tls", "v");
  ASSERT_TRUE(put.ok()) << put;
  absl::StatusOr<std::string> value = Get(*client_, "/tls");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "v");

  EtcdOptions plaintext;
  plaintext.endpoints = {server_->endpoint()};
  plaintext.rpc_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<EtcdClient>> plain = EtcdClient::Connect(plaintext);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(Get(**plain, "/tls").ok());

  // TLS that does not trust the test CA fails too.
  EtcdOptions untrusted = plaintext;
  untrusted.tls = true;
  absl::StatusOr<std::unique_ptr<EtcdClient>> stranger = EtcdClient::Connect(untrusted);
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  EXPECT_FALSE(Get(**stranger, "/tls").ok());
}

}  // namespace
}  // namespace joule::etcd
