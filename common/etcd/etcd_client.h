#ifndef JOULE_COMMON_ETCD_ETCD_CLIENT_H_
#define JOULE_COMMON_ETCD_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "common/clock.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace joule::etcd {

// Where and how to reach etcd.
struct EtcdOptions {
  // "host:port" client endpoints of one etcd cluster, tried in order.
  std::vector<std::string> endpoints;
  // TLS: on when `tls` is set. `ca_file` (PEM) verifies the server; empty
  // uses the system roots. `cert_file` and `key_file` (PEM, both or neither)
  // are the client certificate.
  bool tls = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Username/password auth: when `username` is set the client calls
  // Auth.Authenticate and sends the token (metadata "token") on every call,
  // authenticating again when etcd says the token is invalid or expired.
  std::string username;
  std::string password;
  // Deadline of each unary call (Campaign has its own).
  absl::Duration rpc_timeout = absl::Seconds(5);
};

// A parsed --store URL: "etcd://host:port[,host:port...][/prefix]" (plaintext)
// or "etcds://..." (TLS). The prefix defaults to "/joule/" (also for a bare
// trailing "/") and always ends in "/". Every endpoint needs a port (1-65535);
// IPv6 hosts are written "[addr]:port". Errors (INVALID_ARGUMENT) name what is
// wrong.
struct EtcdUrl {
  std::vector<std::string> endpoints;
  std::string prefix = "/joule/";
  bool tls = false;
};
absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url);

// The first key after every key that starts with `prefix` (etcd's range_end
// for a prefix): the last byte below 0xff incremented, bytes after it dropped;
// "\0" when every byte is 0xff (the whole keyspace from `prefix`).
std::string PrefixRangeEnd(absl::string_view prefix);

// A client of etcd's v3 gRPC API (KV, Watch, Lease, Auth.Authenticate,
// v3election), with endpoint failover: a call that fails with UNAVAILABLE
// (connection refused, member down) is retried once on each other endpoint
// before it fails, and the endpoint that answered is used first from then on.
// Calls that reached etcd and were refused are not retried.
//
// gRPC errors become absl::Status with the same code and etcd's message,
// prefixed with the method and the endpoint ("etcd Put at 127.0.0.1:2379: ...").
//
// Each client runs one background thread that keeps its channels polled, so
// that a member that comes back is reconnected within about two seconds.
//
// Thread-safe.
class EtcdClient {
 public:
  // Builds channels and authenticates (when a username is set). Does not need
  // etcd to be up unless auth is on.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Connect(EtcdOptions options);
  ~EtcdClient();

  const EtcdOptions& options() const { return options_; }

  // KV.
  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& request);
  absl::StatusOr<etcdserverpb::PutResponse> Put(
      const etcdserverpb::PutRequest& request);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& request);

  // Lease.
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(int64_t ttl_s);
  absl::Status LeaseRevoke(int64_t lease_id);
  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> LeaseTimeToLive(
      int64_t lease_id);
  // One LeaseKeepAlive round trip: the TTL (seconds) the lease has from now.
  // NOT_FOUND when the lease has expired or was revoked (etcd answers TTL 0).
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id);
  // The same with its own deadline instead of rpc_timeout (LeaseKeeper uses
  // it so that a hung etcd cannot hold a keep-alive past the lease's expiry).
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id,
                                             absl::Duration timeout);

  // v3election. Campaign blocks until this lease leads `name` or `timeout`
  // passes (DEADLINE_EXCEEDED; etcd then withdraws the candidacy).
  absl::StatusOr<v3electionpb::CampaignResponse> Campaign(
      const std::string& name, int64_t lease_id, const std::string& value,
      absl::Duration timeout);
  // Streams the leader of `name`: `on_leader` runs (on this thread) with the
  // current leader's key-value and again at every change, until it returns
  // false (OK), the stream fails or `timeout` passes (an error). While nobody
  // leads, etcd sends nothing.
  absl::Status Observe(
      const std::string& name, absl::Duration timeout,
      const std::function<bool(const v3electionpb::LeaderResponse&)>& on_leader);
  // Ends every Campaign and Observe in flight and every later one with
  // CANCELLED (for shutdown: they may block for as long as a leader lives).
  void CancelCampaigns();
  absl::Status Proclaim(const v3electionpb::LeaderKey& leader,
                        const std::string& value);
  // The current leader's key-value; NOT_FOUND when there is none.
  absl::StatusOr<v3electionpb::LeaderResponse> Leader(const std::string& name);
  absl::Status Resign(const v3electionpb::LeaderKey& leader);

  // Streaming calls get a context whose channel and token come from here;
  // used by EtcdWatch and Observe.
  std::unique_ptr<grpc::ClientContext> NewStreamContext();
  etcdserverpb::Watch::Stub* watch_stub();
  v3electionpb::Election::Stub* election_stub();
  // Moves on to the next endpoint after a stream failed on this one.
  void RotateEndpoint();

 private:
  explicit EtcdClient(EtcdOptions options);
  // (implementation-defined members)
  EtcdOptions options_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Keeps a lease alive from a thread: a keep-alive every ttl/3. The lease is
// taken as lost -- `on_lost` runs once, from that thread -- when etcd says it
// expired, or when no keep-alive has succeeded for longer than the TTL
// measured from the send time of the last successful one (so the holder never
// believes in a lease that etcd may already have expired). Transient errors
// are retried until then. Times and waits are on `clock` (the caller's; the
// keeper reads no clock of its own).
class LeaseKeeper {
 public:
  LeaseKeeper(EtcdClient* client, const Clock* clock, int64_t lease_id, int64_t ttl_s,
              std::function<void(const absl::Status& why)> on_lost);
  ~LeaseKeeper();  // stops the thread; does not revoke the lease

  bool lost() const { return lost_.load(); }

 private:
  void Run();

  EtcdClient* const client_;
  const Clock* const clock_;
  const int64_t lease_id_;
  const int64_t ttl_s_;
  std::function<void(const absl::Status&)> on_lost_;
  std::atomic<bool> lost_{false};
  std::atomic<bool> stop_{false};
  // Notified by the destructor; wakes the thread from its wait.
  absl::Notification stopping_;
  std::thread thread_;
};

// One event of a watch, in revision order.
struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // empty for kDelete
  int64_t mod_revision = 0;
};

// Follows every key under a prefix: loads them with one Range at a revision,
// then watches from the next revision, reconnecting (on the next endpoint)
// after a stream failure and resuming from the last revision seen. When etcd
// has compacted past that revision, it loads the whole prefix again.
//
// The callbacks run on the watch thread, in order:
//   on_reset(snapshot, revision): the full state at `revision` (at start and
//     after a compaction);
//   on_events(events, revision): changes up to `revision`.
class EtcdWatch {
 public:
  using ResetFn = std::function<void(
      const std::vector<std::pair<std::string, std::string>>& snapshot,
      int64_t revision)>;
  using EventsFn =
      std::function<void(const std::vector<WatchEvent>& events, int64_t revision)>;

  EtcdWatch(EtcdClient* client, std::string prefix, ResetFn on_reset,
            EventsFn on_events);
  ~EtcdWatch();  // cancels the stream and joins the thread

  // Asks etcd for a progress notification, so that a quiet watch learns the
  // current revision (on_events with no events). Sent once the stream is
  // created when there is none yet. etcd before 3.4.24 / 3.5.8 may answer
  // with a revision whose events are still in flight (etcd issue 15220);
  // reported revisions never go backwards.
  void RequestProgress();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace joule::etcd

#endif  // JOULE_COMMON_ETCD_ETCD_CLIENT_H_
