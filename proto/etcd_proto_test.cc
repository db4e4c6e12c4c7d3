// The etcd subset must stay wire-compatible with etcd: the gRPC method paths
// and the field numbers below are etcd's (checked against etcd-io/etcd's
// api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto and v3election.proto).
#include <string>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/mvccpb/kv.pb.h"
#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "gtest/gtest.h"

namespace {

int FieldNumber(const google::protobuf::Descriptor* message, const std::string& field) {
  const google::protobuf::FieldDescriptor* descriptor = message->FindFieldByName(field);
  return descriptor == nullptr ? -1 : descriptor->number();
}

const google::protobuf::ServiceDescriptor* Service(const std::string& name) {
  // Touch the generated files so that their descriptors are registered.
  (void)etcdserverpb::RangeRequest::descriptor();
  (void)v3electionpb::LeaderKey::descriptor();
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
}

TEST(EtcdProtoTest, ServicesHaveEtcdsFullNames) {
  EXPECT_EQ(etcdserverpb::KV::service_full_name(), std::string("etcdserverpb.KV"));
  EXPECT_EQ(etcdserverpb::Watch::service_full_name(), std::string("etcdserverpb.Watch"));
  EXPECT_EQ(etcdserverpb::Lease::service_full_name(), std::string("etcdserverpb.Lease"));
  EXPECT_EQ(etcdserverpb::Auth::service_full_name(), std::string("etcdserverpb.Auth"));
  EXPECT_EQ(v3electionpb::Election::service_full_name(),
            std::string("v3electionpb.Election"));
}

TEST(EtcdProtoTest, FieldNumbersAreEtcds) {
  EXPECT_EQ(FieldNumber(mvccpb::KeyValue::descriptor(), "create_revision"), 2);
  EXPECT_EQ(FieldNumber(mvccpb::KeyValue::descriptor(), "lease"), 6);
  EXPECT_EQ(FieldNumber(etcdserverpb::RangeRequest::descriptor(), "count_only"), 9);
  EXPECT_EQ(FieldNumber(etcdserverpb::Compare::descriptor(), "create_revision"), 5);
  EXPECT_EQ(FieldNumber(etcdserverpb::Compare::descriptor(), "lease"), 8);
  EXPECT_EQ(FieldNumber(etcdserverpb::Compare::descriptor(), "range_end"), 64);
  EXPECT_EQ(FieldNumber(etcdserverpb::RequestOp::descriptor(), "request_txn"), 4);
  EXPECT_EQ(FieldNumber(etcdserverpb::WatchCreateRequest::descriptor(), "watch_id"), 7);
  EXPECT_EQ(FieldNumber(etcdserverpb::WatchResponse::descriptor(), "events"), 11);
  EXPECT_EQ(FieldNumber(etcdserverpb::LeaseGrantResponse::descriptor(), "error"), 4);
  EXPECT_EQ(FieldNumber(etcdserverpb::LeaseTimeToLiveResponse::descriptor(), "grantedTTL"), 4);
  EXPECT_EQ(FieldNumber(etcdserverpb::AuthenticateResponse::descriptor(), "token"), 2);
  EXPECT_EQ(FieldNumber(v3electionpb::LeaderKey::descriptor(), "rev"), 3);
  EXPECT_EQ(FieldNumber(v3electionpb::ProclaimRequest::descriptor(), "value"), 2);
}

TEST(EtcdProtoTest, MethodsAreThoseEtcdServes) {
  const google::protobuf::ServiceDescriptor* kv = Service("etcdserverpb.KV");
  ASSERT_NE(kv, nullptr);
  for (const char* method : {"Range", "Put", "DeleteRange", "Txn"}) {
    EXPECT_NE(kv->FindMethodByName(method), nullptr) << method;
  }
  ASSERT_NE(Service("etcdserverpb.Lease"), nullptr);
  const google::protobuf::MethodDescriptor* keep_alive =
      Service("etcdserverpb.Lease")->FindMethodByName("LeaseKeepAlive");
  ASSERT_NE(keep_alive, nullptr);
  EXPECT_TRUE(keep_alive->client_streaming());
  EXPECT_TRUE(keep_alive->server_streaming());
  ASSERT_NE(Service("v3electionpb.Election"), nullptr);
  const google::protobuf::MethodDescriptor* observe =
      Service("v3electionpb.Election")->FindMethodByName("Observe");
  ASSERT_NE(observe, nullptr);
  EXPECT_TRUE(observe->server_streaming());
}

}  // namespace
