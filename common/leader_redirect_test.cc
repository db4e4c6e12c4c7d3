#include "common/leader_redirect.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"

namespace joule {
namespace {

// A standby replica: refuses every call of both services, naming `leader`.
class FakeStandby final : public v1::SchedulerService::Service,
                          public v1::AgentService::Service {
 public:
  explicit FakeStandby(std::string leader) : leader_(std::move(leader)) {}

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest*,
                      v1::Job*) override {
    return NotLeaderStatus(context, leader_);
  }
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::SchedulerCommand, v1::AgentMessage>*) override {
    return NotLeaderStatus(context, leader_);
  }

 private:
  const std::string leader_;
};

// A standby serving on a port of 127.0.0.1 picked by the system.
class StandbyServer {
 public:
  explicit StandbyServer(std::string leader) : service_(std::move(leader)) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(static_cast<v1::SchedulerService::Service*>(&service_));
    builder.RegisterService(static_cast<v1::AgentService::Service*>(&service_));
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  }
  ~StandbyServer() { server_->Shutdown(); }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  FakeStandby service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST(LeaderRedirectTest, UnaryRefusalNamesTheLeader) {
  StandbyServer standby("10.0.0.7:7070");
  auto stub = v1::SchedulerService::NewStub(standby.channel());
  grpc::ClientContext context;
  v1::Job job;
  const grpc::Status status = stub->GetJob(&context, v1::GetJobRequest(), &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "not the leader; the leader is at 10.0.0.7:7070");
  EXPECT_TRUE(IsNotLeader(status));
  EXPECT_EQ(LeaderHint(context), "10.0.0.7:7070");
}

TEST(LeaderRedirectTest, RefusalWithoutLeaderHasNoHint) {
  StandbyServer standby("");
  auto stub = v1::SchedulerService::NewStub(standby.channel());
  grpc::ClientContext context;
  v1::Job job;
  const grpc::Status status = stub->GetJob(&context, v1::GetJobRequest(), &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "not the leader; no leader elected yet");
  EXPECT_TRUE(IsNotLeader(status));
  EXPECT_EQ(LeaderHint(context), "");
  EXPECT_TRUE(context.GetServerTrailingMetadata().find(kLeaderMetadataKey) ==
              context.GetServerTrailingMetadata().end());
}

TEST(LeaderRedirectTest, StreamRefusalNamesTheLeaderAfterFinish) {
  StandbyServer standby("leader.example:7070");
  auto stub = v1::AgentService::NewStub(standby.channel());
  grpc::ClientContext context;
  auto stream = stub->Connect(&context);
  v1::AgentMessage hello;
  hello.mutable_register_()->mutable_node()->set_name("n1");
  stream->Write(hello);  // may fail: the standby does not read
  v1::SchedulerCommand command;
  EXPECT_FALSE(stream->Read(&command));
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(IsNotLeader(status)) << status.error_message();
  EXPECT_EQ(LeaderHint(context), "leader.example:7070");
}

TEST(LeaderRedirectTest, OtherStatusesAreNotRefusals) {
  EXPECT_FALSE(IsNotLeader(grpc::Status::OK));
  EXPECT_FALSE(IsNotLeader(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "failed to connect to all addresses")));
  EXPECT_FALSE(IsNotLeader(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not the leader; odd code")));
}

TEST(LeaderRedirectTest, NoHintBeforeAnyAnswer) {
  grpc::ClientContext context;
  EXPECT_EQ(LeaderHint(context), "");
}

}  // namespace
}  // namespace joule
