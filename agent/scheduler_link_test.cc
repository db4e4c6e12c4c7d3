#include "agent/scheduler_link.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/leader_redirect.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.grpc.pb.h"

namespace joule {
namespace {

constexpr absl::Duration kPatience = absl::Seconds(20);

// A scheduler replica's AgentService on 127.0.0.1:0. As leader it reads the
// Register, answers with a RegisterAck and holds the stream until the agent
// goes or the replica steps down; as standby it refuses with NotLeaderStatus.
// Thread-safe; state guarded by mu_.
class FakeScheduler final : public v1::AgentService::Service {
 public:
  FakeScheduler() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  ~FakeScheduler() override {
    server_->Shutdown(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(1)));
  }

  const std::string& address() const { return address_; }

  // Refuses new streams and ends the open ones, naming `leader` ("" for
  // none known).
  void BecomeStandby(const std::string& leader) {
    absl::MutexLock lock(&mu_);
    standby_ = true;
    leader_ = leader;
  }
  void BecomeLeader() {
    absl::MutexLock lock(&mu_);
    standby_ = false;
  }
  int connects() const {
    absl::MutexLock lock(&mu_);
    return connects_;
  }
  std::vector<std::string> registered() const {
    absl::MutexLock lock(&mu_);
    return registered_;
  }
  // Waits until `count` Registers have arrived.
  bool WaitForRegisters(size_t count) const {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return registered_.size() >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), kPatience);
  }

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::SchedulerCommand, v1::AgentMessage>* stream) override {
    {
      absl::MutexLock lock(&mu_);
      ++connects_;
      if (standby_) return NotLeaderStatus(context, leader_);
    }
    v1::AgentMessage message;
    if (!stream->Read(&message) || !message.has_register_()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected a Register");
    }
    v1::SchedulerCommand ack;
    ack.mutable_register_ack()->mutable_heartbeat_timeout()->set_seconds(10);
    stream->Write(ack);
    absl::MutexLock lock(&mu_);
    registered_.push_back(message.register_().node().name());
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return standby_ || context->IsCancelled();
    };
    // IsCancelled() is not a mutex-guarded condition: poll it.
    while (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(20))) {
    }
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    return NotLeaderStatus(context, leader_);
  }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  mutable absl::Mutex mu_;
  bool standby_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  int connects_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> registered_ ABSL_GUARDED_BY(mu_);
};

// A SchedulerLink for node "n1" that records the commands it receives.
// Thread-safe; state guarded by mu_.
class LinkUnderTest {
 public:
  explicit LinkUnderTest(const std::vector<std::string>& targets)
      : link_(
            absl::StrJoin(targets, ","), RealClock::Get(),
            [] {
              v1::Register hello;
              hello.mutable_node()->set_name("n1");
              return hello;
            },
            [this](const v1::SchedulerCommand& command) {
              absl::MutexLock lock(&mu_);
              acks_ += command.has_register_ack();
            }) {
    link_.Start();
  }
  ~LinkUnderTest() { link_.Stop(); }

  SchedulerLink& link() { return link_; }
  bool WaitForAcks(int count) {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acks_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), kPatience);
  }

 private:
  absl::Mutex mu_;
  int acks_ ABSL_GUARDED_BY(mu_) = 0;
  SchedulerLink link_;
};

TEST(SchedulerLinkTest, RegistersAtTheLeaderAStandbyNames) {
  FakeScheduler leader, standby;
  standby.BecomeStandby(leader.address());
  // The leader is not even in the list: the hint alone leads there.
  LinkUnderTest agent({standby.address()});
  ASSERT_TRUE(leader.WaitForRegisters(1));
  ASSERT_TRUE(agent.WaitForAcks(1));
  EXPECT_THAT(leader.registered(), ::testing::ElementsAre("n1"));
  EXPECT_TRUE(agent.link().connected());
  EXPECT_EQ(standby.connects(), 1);
  EXPECT_EQ(agent.link().reconnects(), 1);
}

TEST(SchedulerLinkTest, TriesTheNextReplicaWhenNoLeaderIsNamed) {
  FakeScheduler standby, leader;
  standby.BecomeStandby("");
  LinkUnderTest agent({standby.address(), leader.address()});
  ASSERT_TRUE(leader.WaitForRegisters(1));
  ASSERT_TRUE(agent.WaitForAcks(1));
  EXPECT_EQ(standby.connects(), 1);
}

TEST(SchedulerLinkTest, SkipsAReplicaThatIsDown) {
  DeadPort dead;
  FakeScheduler leader;
  LinkUnderTest agent({dead.address(), leader.address()});
  ASSERT_TRUE(leader.WaitForRegisters(1));
  ASSERT_TRUE(agent.WaitForAcks(1));
}

TEST(SchedulerLinkTest, FollowsTheLeaderWhenItStepsDown) {
  FakeScheduler first, second;
  second.BecomeStandby(first.address());
  LinkUnderTest agent({first.address(), second.address()});
  ASSERT_TRUE(first.WaitForRegisters(1));
  ASSERT_TRUE(agent.WaitForAcks(1));
  EXPECT_EQ(second.connects(), 0);

  second.BecomeLeader();
  first.BecomeStandby(second.address());  // ends the open stream too
  ASSERT_TRUE(second.WaitForRegisters(1));
  ASSERT_TRUE(agent.WaitForAcks(2));
  EXPECT_EQ(second.connects(), 1);
  EXPECT_EQ(first.registered().size(), 1u);
}

}  // namespace
}  // namespace joule
