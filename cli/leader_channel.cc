#include "cli/leader_channel.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/leader_redirect.h"

namespace joule {
namespace {

// Waits until `channel` is connected. Returns "" when it is, else why not.
// A channel in TRANSIENT_FAILURE fails at once: its replica refused or timed
// out a connection (within the 2 s connect timeout of the failover settings).
std::string WaitForConnection(grpc::Channel& channel, absl::Time deadline) {
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return "could not connect";
    }
    if (!channel.WaitForStateChange(state, absl::ToChronoTime(deadline))) {
      return "could not connect in time";
    }
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return "";
}

// Waits about `wait` (real time) while polling `channel`. A synchronous
// client's channel makes progress (connects, handshakes) only while some
// thread polls it; a plain sleep would leave that to gRPC's backup poller,
// which runs every 5 s, so a connection attempt begun during the sleep misses
// its 2 s connect deadline again and again (with TLS, every time).
void PollChannelFor(grpc::Channel& channel, absl::Duration wait) {
  const absl::Time until = absl::Now() + wait;
  while (absl::Now() < until) {
    const grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_SHUTDOWN) return;
    channel.WaitForStateChange(state, absl::ToChronoTime(until));
  }
}

grpc::Status WithAddress(const grpc::Status& status, const std::string& address) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
      status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    return status;
  }
  return grpc::Status(status.error_code(),
                      absl::StrCat(status.error_message(), " (scheduler ", address, ")"),
                      status.error_details());
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeaderChannel>> LeaderChannel::Create(
    absl::string_view addresses, const Clock* clock, Options options) {
  std::vector<std::string> list = SchedulerTargets::SplitAddressList(addresses);
  if (list.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--scheduler: no address in \"", addresses,
                     "\"; give HOST:PORT or a comma-separated list of them"));
  }
  return std::unique_ptr<LeaderChannel>(
      new LeaderChannel(SchedulerTargets(std::move(list)), clock, std::move(options)));
}

LeaderChannel::LeaderChannel(SchedulerTargets targets, const Clock* clock, Options options)
    : targets_(std::move(targets)), clock_(clock), options_(std::move(options)) {}

LeaderChannel::Endpoint& LeaderChannel::EndpointFor(const std::string& address) {
  Endpoint& endpoint = endpoints_[address];
  if (endpoint.stub == nullptr) {
    grpc::ChannelArguments args = options_.channel_args;
    SetFailoverChannelArgs(&args);
    endpoint.channel = grpc::CreateCustomChannel(
        address,
        options_.credentials != nullptr ? options_.credentials
                                        : grpc::InsecureChannelCredentials(),
        args);
    endpoint.stub = v1::SchedulerService::NewStub(endpoint.channel);
  }
  return endpoint;
}

grpc::Status LeaderChannel::Run(Retry retry, bool with_deadline, const Attempt& attempt) {
  const absl::Time call_deadline = clock_->Now() + options_.timeout;
  absl::Time give_up = call_deadline;
  absl::Duration backoff = options_.min_backoff;
  std::vector<std::string> tried;
  std::string last_address;
  grpc::Status last_error;
  while (true) {
    const std::string address = targets_.current();
    if (std::find(tried.begin(), tried.end(), address) == tried.end()) {
      tried.push_back(address);
    }
    Endpoint& endpoint = EndpointFor(address);
    grpc::Status status;
    std::string hint;
    bool sent = false;
    bool progressed = false;
    const std::string not_connected = WaitForConnection(*endpoint.channel, give_up);
    if (!not_connected.empty()) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, not_connected);
    } else {
      grpc::ClientContext context;
      if (with_deadline) context.set_deadline(absl::ToChronoTime(call_deadline));
      if (!options_.bearer_token.empty()) {
        context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
      }
      sent = true;
      status = attempt(*endpoint.stub, context, &progressed);
      hint = LeaderHint(context);
    }
    const bool refused = !hint.empty() || IsNotLeader(status);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !last_address.empty()) {
      // The timeout ran out while looking for the leader.
      last_address = address;
      last_error = status;
      break;
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      targets_.OnLeaderReached();
      return WithAddress(status, address);
    }
    // The leader failed mid-call: it may have acted on the request.
    if (sent && !refused && retry == Retry::kIfNotSent) return WithAddress(status, address);
    if (progressed) {
      // A stream that delivered data found the leader; looking for the next
      // one gets a fresh timeout.
      give_up = clock_->Now() + options_.timeout;
      backoff = options_.min_backoff;
      tried = {address};
    }
    last_address = address;
    last_error = status;
    if (targets_.OnFailure(hint) == SchedulerTargets::Next::kBackOff) {
      const absl::Duration left = give_up - clock_->Now();
      if (left > absl::ZeroDuration()) {
        PollChannelFor(*EndpointFor(targets_.current()).channel, std::min(backoff, left));
      }
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    if (clock_->Now() >= give_up) break;
  }
  return grpc::Status(
      last_error.error_code(),
      absl::StrCat("no answer from a scheduler leader within ",
                   absl::FormatDuration(options_.timeout), " (tried ",
                   absl::StrJoin(tried, ", "), "); last error from ", last_address, ": ",
                   last_error.error_message()));
}

}  // namespace joule
