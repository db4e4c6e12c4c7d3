#include "common/leader_redirect.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace joule {
namespace {

constexpr char kNotLeaderPrefix[] = "not the leader";

}  // namespace

grpc::Status NotLeaderStatus(grpc::ServerContextBase* context,
                             const std::string& leader_address) {
  if (leader_address.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat(kNotLeaderPrefix, "; no leader elected yet"));
  }
  context->AddTrailingMetadata(kLeaderMetadataKey, leader_address);
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat(kNotLeaderPrefix, "; the leader is at ", leader_address));
}

std::string LeaderHint(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto it = trailers.find(kLeaderMetadataKey);
  if (it == trailers.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

bool IsNotLeader(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         absl::StartsWith(status.error_message(), kNotLeaderPrefix);
}

void SetFailoverChannelArgs(grpc::ChannelArguments* args) {
  // Despite its name, this is gRPC's minimum connect timeout.
  args->SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000);
  args->SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args->SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A scheduler that is frozen (SIGSTOP, a stalled VM) keeps its TCP
  // connections open, so only HTTP/2 pings notice it: one every
  // kKeepaliveTime, and the connection is dropped when the answer takes
  // longer than kKeepaliveTimeout. Servers must allow it
  // (ApplyServerLimits).
  args->SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, absl::ToInt64Milliseconds(kKeepaliveTime));
  args->SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
               absl::ToInt64Milliseconds(kKeepaliveTimeout));
  args->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args->SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}


}  // namespace joule
