#ifndef JOULE_COMMON_LEADER_REDIRECT_H_
#define JOULE_COMMON_LEADER_REDIRECT_H_

#include <string>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace joule {

// How a standby scheduler replica turns clients away, and how clients find
// the leader from its answer. Several replicas share one etcd and exactly one
// leads. A standby answers every RPC of SchedulerService and AgentService
// with UNAVAILABLE, "not the leader; ...", and, when it knows the leader, the
// leader's HOST:PORT in the trailing metadata under kLeaderMetadataKey.
// Clients (joulectl, the agent's SchedulerLink) retry at that address, or at
// the next address of their list when there is no hint.

// Trailing-metadata key of the leader's address ("HOST:PORT").
inline constexpr char kLeaderMetadataKey[] = "joule-leader";

// Server side: the status a standby returns, with the trailing metadata
// naming the leader. `leader_address` empty means no leader is known yet.
// Message: "not the leader; the leader is at HOST:PORT" or
// "not the leader; no leader elected yet".
grpc::Status NotLeaderStatus(grpc::ServerContextBase* context,
                             const std::string& leader_address);

// Client side: the leader's address from the trailing metadata of a finished
// call, or "" when the server named none. Call after the call finished
// (after Finish() for streams).
std::string LeaderHint(const grpc::ClientContext& context);

// True for the status NotLeaderStatus builds: the standby did nothing, so
// even a non-idempotent call may be sent again elsewhere.
bool IsNotLeader(const grpc::Status& status);

// Channel settings for clients that fail over between replicas: a connection
// attempt gives up after 2 s (a replica whose host is down must not hold a
// call for gRPC's default 20 s), and gRPC's own reconnect backoff stays
// between 100 ms and 1 s (default 1 s growing to 120 s), so a replica that
// comes back is reached within about a second. HTTP/2 keepalive pings every
// kKeepaliveTime drop a connection to a frozen scheduler after
// kKeepaliveTimeout more. Servers accept those pings (ApplyServerLimits in
// common/server_options.h).
inline constexpr absl::Duration kKeepaliveTime = absl::Seconds(2);
inline constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(2);
void SetFailoverChannelArgs(grpc::ChannelArguments* args);

}  // namespace joule

#endif  // JOULE_COMMON_LEADER_REDIRECT_H_
