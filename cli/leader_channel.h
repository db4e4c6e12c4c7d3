#ifndef JOULE_CLI_LEADER_CHANNEL_H_
#define JOULE_CLI_LEADER_CHANNEL_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/scheduler_targets.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/scheduler.grpc.pb.h"

namespace joule {
namespace leader_channel_internal {

template <typename Reader>
struct MessageOf;
template <typename R>
struct MessageOf<grpc::ClientReader<R>> {
  using type = R;
};

}  // namespace leader_channel_internal

// joulectl's way to the leading scheduler replica among several. Every call
// goes through Call() (unary) or Stream() (server streams), which:
//  1. waits for a connection to the current replica (SchedulerTargets: the
//     last leader, a hinted leader, or the next address of the list);
//  2. sends the call with a deadline at the end of the overall timeout;
//  3. returns any answer from the leader, errors included;
//  4. on UNAVAILABLE, tries again where SchedulerTargets says, at once or
//     after a backoff (200 ms doubling to 1 s) once every address failed,
//     until the timeout is spent; then fails ("no answer from a scheduler
//     leader within 30s (tried A, B); last error from B: ...") with the code
//     of the last error, UNAVAILABLE or DEADLINE_EXCEEDED.
// A call that is not safe to repeat (Retry::kIfNotSent) is sent again only
// when the first try surely did nothing: a standby refused it (NotLeaderStatus)
// or no connection was made, so it was never sent. An UNAVAILABLE from a
// connected replica that is not a refusal (the leader failed mid-call) is
// returned as is, as are DEADLINE_EXCEEDED and every other error.
// UNAVAILABLE and DEADLINE_EXCEEDED messages end with "(scheduler HOST:PORT)".
//
// Thread-compatible: one caller at a time.
class LeaderChannel {
 public:
  using Stub = v1::SchedulerService::Stub;

  struct Options {
    // Per call, retries included; for streams, the time allowed without
    // reaching the leader (a stream may run for longer).
    absl::Duration timeout = absl::Seconds(30);
    absl::Duration min_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Seconds(1);
    // Extra channel arguments (message sizes); failover settings are added.
    grpc::ChannelArguments channel_args;
    // TLS (MakeClientTlsCredentials) or, for --insecure, plaintext; null
    // means plaintext.
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    // Sent as "authorization: Bearer TOKEN" on every call when not empty.
    std::string bearer_token;
  };

  enum class Retry {
    kAlways,     // read-only or idempotent: retry after any UNAVAILABLE
    kIfNotSent,  // changes state: retry only when the call did nothing
  };

  // `addresses`: "HOST:PORT[,HOST:PORT...]". INVALID_ARGUMENT when it names
  // no address. `clock` must outlive the channel.
  static absl::StatusOr<std::unique_ptr<LeaderChannel>> Create(
      absl::string_view addresses, const Clock* clock, Options options);

  // Calls the unary `method` of the leader, e.g.
  //   channel.Call(&LeaderChannel::Stub::GetJob, request, &job, Retry::kAlways);
  template <typename Method, typename Request, typename Response>
  grpc::Status Call(Method method, const Request& request, Response* response,
                    Retry retry) {
    return Run(retry, /*with_deadline=*/true,
               [&](Stub& stub, grpc::ClientContext& context, bool*) {
                 return (stub.*method)(&context, request, response);
               });
  }

  // Reads the server stream of the read-only `method` of the leader until it
  // ends, passing each message to on_message(const Response&). The stream has
  // no deadline. When it breaks with UNAVAILABLE (the leader went away), it is
  // opened again at the new leader, which sends the current state again; the
  // timeout then counts from the last message received.
  template <typename Method, typename Request, typename OnMessage>
  grpc::Status Stream(Method method, const Request& request, OnMessage on_message) {
    return Run(Retry::kAlways, /*with_deadline=*/false,
               [&](Stub& stub, grpc::ClientContext& context, bool* progressed) {
                 auto reader = (stub.*method)(&context, request);
                 typename leader_channel_internal::MessageOf<
                     typename decltype(reader)::element_type>::type message;
                 while (reader->Read(&message)) {
                   *progressed = true;
                   on_message(message);
                 }
                 return reader->Finish();
               });
  }

  // The replica the next call goes to first: the last one that answered as
  // leader, if any.
  const std::string& current() const { return targets_.current(); }

 private:
  // One try at one replica; sets *progressed when the leader sent data.
  using Attempt =
      std::function<grpc::Status(Stub& stub, grpc::ClientContext& context, bool* progressed)>;

  struct Endpoint {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<Stub> stub;
  };

  LeaderChannel(SchedulerTargets targets, const Clock* clock, Options options);

  grpc::Status Run(Retry retry, bool with_deadline, const Attempt& attempt);
  Endpoint& EndpointFor(const std::string& address);

  SchedulerTargets targets_;
  const Clock* const clock_;
  const Options options_;
  std::map<std::string, Endpoint> endpoints_;
};

}  // namespace joule

#endif  // JOULE_CLI_LEADER_CHANNEL_H_
