#include "cli/leader_channel.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/leader_redirect.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/scheduler.grpc.pb.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Retry = LeaderChannel::Retry;
using Stub = LeaderChannel::Stub;

// A scheduler replica on 127.0.0.1:0. As leader it answers with jobs whose
// id is its address; as standby it refuses every call with NotLeaderStatus.
// Thread-safe; state guarded by mu_.
class FakeScheduler final : public v1::SchedulerService::Service {
 public:
  FakeScheduler() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  ~FakeScheduler() override { server_->Shutdown(); }

  const std::string& address() const { return address_; }

  // Refuses calls, naming `leader` ("" for none known).
  void BecomeStandby(const std::string& leader) {
    absl::MutexLock lock(&mu_);
    standby_ = true;
    leader_ = leader;
  }
  // As leader, answers every call with `status` instead.
  void FailWith(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    failure_ = status;
  }
  // As leader, WatchJob sends these states; then, if `leader` is set, the
  // replica steps down and ends the stream refusing, naming `leader`.
  void WatchScript(std::vector<v1::JobState> states, const std::string& then_leader) {
    absl::MutexLock lock(&mu_);
    watch_states_ = std::move(states);
    step_down_to_ = then_leader;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest*,
                      v1::Job* job) override {
    return Answer(context, job);
  }
  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest*,
                         v1::Job* job) override {
    return Answer(context, job);
  }
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest*,
                        grpc::ServerWriter<v1::Job>* writer) override {
    v1::Job job;
    grpc::Status status = Answer(context, &job);
    if (!status.ok()) return status;
    absl::MutexLock lock(&mu_);
    for (v1::JobState state : watch_states_) {
      job.set_state(state);
      writer->Write(job);
    }
    if (step_down_to_.empty()) return grpc::Status::OK;
    standby_ = true;
    leader_ = step_down_to_;
    return NotLeaderStatus(context, leader_);
  }

 private:
  grpc::Status Answer(grpc::ServerContext* context, v1::Job* job) {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (standby_) return NotLeaderStatus(context, leader_);
    if (!failure_.ok()) return failure_;
    job->set_id(address_);
    return grpc::Status::OK;
  }

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  mutable absl::Mutex mu_;
  bool standby_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  grpc::Status failure_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::JobState> watch_states_ ABSL_GUARDED_BY(mu_);
  std::string step_down_to_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<LeaderChannel> Channel(const std::vector<std::string>& addresses,
                                       absl::Duration timeout = absl::Seconds(20)) {
  LeaderChannel::Options options;
  options.timeout = timeout;
  absl::StatusOr<std::unique_ptr<LeaderChannel>> channel =
      LeaderChannel::Create(absl::StrJoin(addresses, ","), RealClock::Get(), options);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return channel.ok() ? *std::move(channel) : nullptr;
}

grpc::Status GetJob(LeaderChannel& channel, v1::Job* job) {
  return channel.Call(&Stub::GetJob, v1::GetJobRequest(), job, Retry::kAlways);
}

grpc::Status SubmitJob(LeaderChannel& channel, v1::Job* job) {
  return channel.Call(&Stub::SubmitJob, v1::SubmitJobRequest(), job, Retry::kIfNotSent);
}

TEST(LeaderChannelTest, StandbyRedirectsToLeaderAndLeaderIsRemembered) {
  FakeScheduler leader, standby;
  standby.BecomeStandby(leader.address());
  auto channel = Channel({standby.address(), leader.address()});
  v1::Job job;
  ASSERT_TRUE(SubmitJob(*channel, &job).ok());
  EXPECT_EQ(job.id(), leader.address());
  EXPECT_EQ(standby.calls(), 1);
  EXPECT_EQ(leader.calls(), 1);
  // The next call goes straight to the leader.
  ASSERT_TRUE(GetJob(*channel, &job).ok());
  EXPECT_EQ(standby.calls(), 1);
  EXPECT_EQ(leader.calls(), 2);
  EXPECT_EQ(channel->current(), leader.address());
}

TEST(LeaderChannelTest, FollowsHintToAddressNotInTheList) {
  FakeScheduler leader, standby;
  standby.BecomeStandby(leader.address());
  auto channel = Channel({standby.address()});
  v1::Job job;
  ASSERT_TRUE(GetJob(*channel, &job).ok());
  EXPECT_EQ(job.id(), leader.address());
}

TEST(LeaderChannelTest, SkipsAReplicaThatIsDown) {
  DeadPort dead;
  FakeScheduler leader;
  auto channel = Channel({dead.address(), leader.address()});
  v1::Job job;
  // Never connected, so never sent: even a submit moves on.
  const grpc::Status status = SubmitJob(*channel, &job);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(job.id(), leader.address());
  EXPECT_EQ(leader.calls(), 1);
}

TEST(LeaderChannelTest, GivesUpAfterTimeoutNamingAddressesAndLastError) {
  FakeScheduler first, second;
  first.BecomeStandby("");
  second.BecomeStandby("");
  auto channel = Channel({first.address(), second.address()}, absl::Seconds(1));
  v1::Job job;
  const absl::Time start = RealClock::Get()->Now();
  const grpc::Status status = GetJob(*channel, &job);
  EXPECT_GE(RealClock::Get()->Now() - start, absl::Seconds(1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("within 1s"));
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("tried ", first.address(), ", ", second.address())));
  EXPECT_THAT(status.error_message(), HasSubstr("not the leader; no leader elected yet"));
  // It kept cycling.
  EXPECT_GE(first.calls(), 2);
  EXPECT_GE(second.calls(), 2);
}

TEST(LeaderChannelTest, GivesUpWhenNothingListens) {
  DeadPort dead;
  auto channel = Channel({dead.address()}, absl::Milliseconds(500));
  v1::Job job;
  const grpc::Status status = GetJob(*channel, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("tried ", dead.address())));
  EXPECT_THAT(status.error_message(), HasSubstr("could not connect"));
}

TEST(LeaderChannelTest, SubmitIsNotRepeatedAfterTheLeaderFailedMidCall) {
  FakeScheduler flaky, other;
  flaky.FailWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset"));
  auto channel = Channel({flaky.address(), other.address()});
  v1::Job job;
  const grpc::Status status = SubmitJob(*channel, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("connection reset (scheduler ", flaky.address(), ")"));
  EXPECT_EQ(flaky.calls(), 1);
  EXPECT_EQ(other.calls(), 0);
  // A read may be repeated elsewhere.
  ASSERT_TRUE(GetJob(*channel, &job).ok());
  EXPECT_EQ(job.id(), other.address());
}

TEST(LeaderChannelTest, LeaderErrorsAreReturnedWithoutRetry) {
  FakeScheduler leader, other;
  leader.FailWith(grpc::Status(grpc::StatusCode::NOT_FOUND, "no job j-1"));
  auto channel = Channel({leader.address(), other.address()});
  v1::Job job;
  const grpc::Status status = GetJob(*channel, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "no job j-1");
  EXPECT_EQ(leader.calls(), 1);
  EXPECT_EQ(other.calls(), 0);
}

TEST(LeaderChannelTest, StreamFollowsTheLeaderAcrossAStepDown) {
  FakeScheduler old_leader, new_leader;
  old_leader.WatchScript({v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING},
                         new_leader.address());
  new_leader.WatchScript({v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}, "");
  auto channel = Channel({old_leader.address(), new_leader.address()});
  std::vector<std::pair<std::string, v1::JobState>> seen;
  const grpc::Status status =
      channel->Stream(&Stub::WatchJob, v1::WatchJobRequest(), [&](const v1::Job& job) {
        seen.emplace_back(job.id(), job.state());
      });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(seen, ElementsAre(std::make_pair(old_leader.address(), v1::JOB_STATE_PENDING),
                                std::make_pair(old_leader.address(), v1::JOB_STATE_RUNNING),
                                std::make_pair(new_leader.address(), v1::JOB_STATE_RUNNING),
                                std::make_pair(new_leader.address(), v1::JOB_STATE_SUCCEEDED)));
  EXPECT_EQ(channel->current(), new_leader.address());
}

TEST(LeaderChannelTest, RejectsAnEmptyList) {
  LeaderChannel::Options options;
  absl::StatusOr<std::unique_ptr<LeaderChannel>> channel =
      LeaderChannel::Create(" , ", RealClock::Get(), options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace joule
