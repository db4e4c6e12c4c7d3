#include "common/etcd/etcd_client.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/log.h"
#include "etcd/mvccpb/kv.pb.h"

namespace joule::etcd {
namespace {

// Values may be 16 MiB and a Store Commit 64 MiB; leave room for both in one
// message, and for a Range that returns many large values.
constexpr int kMaxMessageBytes = 256 << 20;

// Reconnect backoff of each channel: short, so a restarted member is found
// again within a couple of seconds rather than gRPC's default two minutes.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 2000;
constexpr int kConnectTimeoutMs = 5000;
// How long each connectivity watch of the poller thread lasts.
constexpr absl::Duration kConnectivityWatchPeriod = absl::Milliseconds(250);

// HTTP/2 keepalive, so a stream to a hung member (SIGSTOP, network partition)
// fails instead of waiting forever. etcd refuses pings more often than its
// --grpc-keepalive-min-time (5 s by default).
constexpr int kKeepaliveTimeMs = 10000;
constexpr int kKeepaliveTimeoutMs = 5000;

// Watch reconnect backoff.
constexpr absl::Duration kWatchMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kWatchMaxBackoff = absl::Seconds(2);
// Keys per Range page when the watch loads its snapshot.
constexpr int64_t kSnapshotPageKeys = 1000;

// One etcd member: its channel and the stubs on it.
struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  std::unique_ptr<v3electionpb::Election::Stub> election;
};

absl::Status EtcdError(absl::string_view method, absl::string_view address,
                       const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd ", method, " at ", address, ": ",
                                   status.error_message()));
}

// etcd refuses a stale token with "etcdserver: invalid auth token"
// (UNAUTHENTICATED) and, after the auth store changed, with "etcdserver:
// revision of auth store is old"; both are cured by a fresh token.
bool IsStaleTokenError(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         absl::StrContains(status.error_message(), "invalid auth token") ||
         absl::StrContains(status.error_message(), "auth store is old");
}

absl::StatusOr<std::string> ReadPemFile(absl::string_view what,
                                        const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    return absl::Status(
        error == 0 ? absl::StatusCode::kNotFound : absl::ErrnoToStatusCode(error),
        absl::StrCat("reading TLS ", what, " \"", path, "\": ",
                     error == 0 ? "cannot open" : std::strerror(error)));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("reading TLS ", what, " \"", path, "\": read error"));
  }
  if (contents.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS ", what, " \"", path, "\" is empty"));
  }
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const EtcdOptions& options) {
  if (!options.tls) {
    if (!options.ca_file.empty() || !options.cert_file.empty() ||
        !options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "etcd: TLS files are set but tls is off (use an etcds:// URL)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd: the client certificate needs both cert_file and key_file");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("CA file", options.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.cert_file.empty()) {
    absl::StatusOr<std::string> cert =
        ReadPemFile("certificate file", options.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("key file", options.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  // gRPC takes this as the time one connection attempt (TCP, TLS, HTTP/2
  // SETTINGS) may take; its default of 20 s would hold up the next attempt
  // that long after connecting to a member that hangs.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kConnectTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Each client gets its own connections, so that clients with different
  // credentials to the same member never share one.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

// Parses one "host:port" or "[v6]:port" of an etcd URL.
absl::Status CheckEndpoint(absl::string_view endpoint) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint \"", endpoint, "\" ", why));
  };
  absl::string_view host;
  absl::string_view port;
  if (endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    if (close == absl::string_view::npos) return bad("has an unterminated '['");
    host = endpoint.substr(1, close - 1);
    absl::string_view rest = endpoint.substr(close + 1);
    if (rest.empty()) return bad("has no port (want host:port)");
    if (rest.front() != ':') return bad("has text after ']' that is not :port");
    port = rest.substr(1);
  } else {
    const size_t colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos) return bad("has no port (want host:port)");
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return bad("has more than one ':' (write IPv6 addresses as [addr]:port)");
    }
  }
  if (host.empty()) return bad("has an empty host");
  for (char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      return bad("has white space in its host");
    }
  }
  if (port.empty()) return bad("has an empty port");
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return bad(absl::StrCat("has a port \"", port, "\" that is not a number"));
    }
  }
  int value = 0;
  if (port.size() > 5 || !absl::SimpleAtoi(port, &value) || value < 1 ||
      value > 65535) {
    return bad(absl::StrCat("has a port ", port, " out of range 1-65535"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("etcd URL \"", url, "\": ", why));
  };
  constexpr absl::string_view kWant =
      "want etcd://host:port[,host:port...][/prefix] or etcds://...";
  if (url.empty()) return bad(absl::StrCat("empty; ", kWant));
  const size_t separator = url.find("://");
  if (separator == absl::string_view::npos) {
    return bad(absl::StrCat("missing scheme; ", kWant));
  }
  EtcdUrl parsed;
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, separator));
  if (scheme == "etcd") {
    parsed.tls = false;
  } else if (scheme == "etcds") {
    parsed.tls = true;
  } else {
    return bad(absl::StrCat("unknown scheme \"", url.substr(0, separator),
                            "\"; want etcd (plaintext) or etcds (TLS)"));
  }
  const absl::string_view rest = url.substr(separator + 3);
  if (rest.find_first_of("?#") != absl::string_view::npos) {
    return bad("query strings and fragments are not supported");
  }
  const size_t slash = rest.find('/');
  const absl::string_view hosts = rest.substr(0, slash);
  const absl::string_view path =
      slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash);
  if (hosts.empty()) return bad(absl::StrCat("no endpoints; ", kWant));
  for (absl::string_view endpoint : absl::StrSplit(hosts, ',')) {
    if (endpoint.empty()) return bad("empty endpoint in the list");
    if (absl::Status status = CheckEndpoint(endpoint); !status.ok()) {
      return bad(status.message());
    }
    parsed.endpoints.emplace_back(endpoint);
  }
  // A bare trailing "/" keeps the default prefix; anything else is the prefix.
  if (!path.empty() && path != "/") {
    parsed.prefix = std::string(path);
    if (parsed.prefix.back() != '/') parsed.prefix.push_back('/');
  }
  return parsed;
}

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    const unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// ---------------------------------------------------------------------------
// EtcdClient

// Endpoints are fixed at construction, so the stubs live as long as the
// client; `current` and `token` change and are guarded by `mu`.
struct EtcdClient::Impl {
  template <typename Response>
  using Rpc = std::function<grpc::Status(Endpoint& endpoint,
                                         grpc::ClientContext* context,
                                         Response* response)>;

  explicit Impl(const EtcdOptions& options) : options(options) {}

  // Campaigns in flight, so that CancelCampaigns can end them.
  absl::Mutex campaigns_mu;
  std::set<grpc::ClientContext*> campaigns ABSL_GUARDED_BY(campaigns_mu);
  bool campaigns_cancelled ABSL_GUARDED_BY(campaigns_mu) = false;

  ~Impl() {
    if (connectivity_thread.joinable()) {
      stopping.store(true);
      connectivity_thread.join();
    }
  }

  // gRPC makes progress on a connection attempt only while some thread polls
  // for its channel. A call that fails fast (UNAVAILABLE while the channel is
  // in TRANSIENT_FAILURE) polls nothing, so without a poller a member that
  // comes back would be reconnected only by gRPC's 5-second backup poller.
  // This thread keeps a connectivity watch on every channel and polls them.
  void StartConnectivityPoller() {
    connectivity_thread = std::thread([this] { PollConnectivity(); });
  }

  void PollConnectivity() {
    int outstanding = 0;
    auto watch = [&](uintptr_t index) {
      grpc::Channel& channel = *endpoints[index]->channel;
      channel.NotifyOnStateChange(
          channel.GetState(/*try_to_connect=*/false),
          absl::ToChronoTime(RealClock::Get()->Now() + kConnectivityWatchPeriod),
          &connectivity_cq, reinterpret_cast<void*>(index));
      ++outstanding;
    };
    for (uintptr_t index = 0; index < endpoints.size(); ++index) watch(index);
    void* tag = nullptr;
    bool ok = false;
    while (connectivity_cq.Next(&tag, &ok)) {
      --outstanding;
      if (!stopping.load()) {
        watch(reinterpret_cast<uintptr_t>(tag));
      } else if (outstanding == 0) {
        connectivity_cq.Shutdown();  // Next returns false once drained
      }
    }
  }

  absl::Time DeadlineAfter(absl::Duration timeout) const {
    if (timeout == absl::InfiniteDuration()) return absl::InfiniteFuture();
    return RealClock::Get()->Now() + timeout;
  }

  std::string Token() {
    absl::MutexLock lock(&mu);
    return token;
  }

  size_t Current() {
    absl::MutexLock lock(&mu);
    return current;
  }

  void SetCurrent(size_t index) {
    absl::MutexLock lock(&mu);
    current = index;
  }

  // Runs `rpc` on the current endpoint, then on each other one while the
  // answer is UNAVAILABLE; re-authenticates once on a stale token.
  template <typename Response>
  absl::StatusOr<Response> Call(absl::string_view method, absl::Time deadline,
                                bool send_token, const Rpc<Response>& rpc) {
    const size_t count = endpoints.size();
    const size_t start = Current();
    bool reauthenticated = false;
    std::vector<std::string> unavailable;
    grpc::Status last;
    size_t attempt = 0;
    while (attempt < count) {
      const size_t index = (start + attempt) % count;
      Endpoint& endpoint = *endpoints[index];
      grpc::ClientContext context;
      if (deadline != absl::InfiniteFuture()) {
        context.set_deadline(absl::ToChronoTime(deadline));
      }
      std::string token;
      if (send_token) {
        token = Token();
        if (!token.empty()) context.AddMetadata("token", token);
      }
      Response response;
      last = rpc(endpoint, &context, &response);
      if (last.ok()) {
        SetCurrent(index);
        return response;
      }
      if (last.error_code() == grpc::StatusCode::UNAVAILABLE) {
        unavailable.push_back(endpoint.address);
        ++attempt;
        if (attempt < count && RealClock::Get()->Now() < deadline) continue;
        break;
      }
      if (send_token && !reauthenticated && !options.username.empty() &&
          IsStaleTokenError(last)) {
        reauthenticated = true;
        if (absl::Status status = Reauthenticate(token); !status.ok()) {
          return status;
        }
        continue;  // the same endpoint again, with the new token
      }
      if (last.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        SetCurrent(index);  // it answered
      }
      return EtcdError(method, endpoint.address, last);
    }
    absl::Status status =
        EtcdError(method, unavailable.empty() ? "?" : unavailable.back(), last);
    if (unavailable.size() > 1) {
      status = absl::Status(
          status.code(),
          absl::StrCat(status.message(), " (no endpoint answered: ",
                       absl::StrJoin(unavailable, ", "), ")"));
    }
    return status;
  }

  // Trades the username and password for a token.
  absl::Status Authenticate() {
    etcdserverpb::AuthenticateRequest request;
    request.set_name(options.username);
    request.set_password(options.password);
    absl::StatusOr<etcdserverpb::AuthenticateResponse> response =
        Call<etcdserverpb::AuthenticateResponse>(
            "Authenticate", DeadlineAfter(options.rpc_timeout),
            /*send_token=*/false,
            [&](Endpoint& endpoint, grpc::ClientContext* context,
                etcdserverpb::AuthenticateResponse* out) {
              return endpoint.auth->Authenticate(context, request, out);
            });
    if (!response.ok()) return response.status();
    absl::MutexLock lock(&mu);
    token = response->token();
    return absl::OkStatus();
  }

  // Authenticates again unless another call already replaced `stale`.
  absl::Status Reauthenticate(const std::string& stale) {
    absl::MutexLock auth_lock(&auth_mu);
    if (Token() != stale) return absl::OkStatus();
    JLOG(INFO) << "etcd: auth token rejected; authenticating again as "
               << options.username;
    return Authenticate();
  }

  const EtcdOptions options;
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  // Held across Authenticate so that concurrent calls that all saw a stale
  // token authenticate once.
  absl::Mutex auth_mu;
  absl::Mutex mu;
  size_t current ABSL_GUARDED_BY(mu) = 0;
  std::string token ABSL_GUARDED_BY(mu);

  grpc::CompletionQueue connectivity_cq;
  std::atomic<bool> stopping{false};
  std::thread connectivity_thread;
};

EtcdClient::EtcdClient(EtcdOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

EtcdClient::~EtcdClient() = default;

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Connect(
    EtcdOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoints");
  }
  for (const std::string& endpoint : options.endpoints) {
    if (endpoint.empty()) return absl::InvalidArgumentError("etcd: empty endpoint");
  }
  if (options.username.empty() && !options.password.empty()) {
    return absl::InvalidArgumentError("etcd: a password without a username");
  }
  if (options.rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd: rpc_timeout must be positive");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();

  std::unique_ptr<EtcdClient> client(new EtcdClient(std::move(options)));
  const grpc::ChannelArguments args = ChannelArgs();
  for (const std::string& address : client->options_.endpoints) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    endpoint->channel = grpc::CreateCustomChannel(address, *credentials, args);
    endpoint->kv = etcdserverpb::KV::NewStub(endpoint->channel);
    endpoint->watch = etcdserverpb::Watch::NewStub(endpoint->channel);
    endpoint->lease = etcdserverpb::Lease::NewStub(endpoint->channel);
    endpoint->auth = etcdserverpb::Auth::NewStub(endpoint->channel);
    endpoint->election = v3electionpb::Election::NewStub(endpoint->channel);
    client->impl_->endpoints.push_back(std::move(endpoint));
  }
  client->impl_->StartConnectivityPoller();
  if (!client->options_.username.empty()) {
    if (absl::Status status = client->impl_->Authenticate(); !status.ok()) {
      return status;
    }
  }
  return client;
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(
    const etcdserverpb::RangeRequest& request) {
  return impl_->Call<etcdserverpb::RangeResponse>(
      "Range", impl_->DeadlineAfter(options_.rpc_timeout), true,
      [&](Endpoint& endpoint, grpc::ClientContext* context,
          etcdserverpb::RangeResponse* response) {
        return endpoint.kv->Range(context, request, response);
      });
}

absl::StatusOr<etcdserverpb::PutResponse> EtcdClient::Put(
    const etcdserverpb::PutRequest& request) {
  return impl_->Call<etcdserverpb::PutResponse>(
      "Put", impl_->DeadlineAfter(options_.rpc_timeout), true,
      [&](Endpoint& endpoint, grpc::ClientContext* context,
          etcdserverpb::PutResponse* response) {
        return endpoint.kv->Put(context, request, response);
      });
}

absl::StatusOr<etcdserverpb::DeleteRangeResponse> EtcdClient::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& request) {
  return impl_->Call<etcdserverpb::DeleteRangeResponse>(
      "DeleteRange", impl_->DeadlineAfter(options_.rpc_timeout), true,
      [&](Endpoint& endpoint, grpc::ClientContext* context,
          etcdserverpb::DeleteRangeResponse* response) {
        return endpoint.kv->DeleteRange(context, request, response);
      });
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(
    const etcdserverpb::TxnRequest& request) {
  return impl_->Call<etcdserverpb::TxnResponse>(
      "Txn", impl_->DeadlineAfter(options_.rpc_timeout), true,
      [&](Endpoint& endpoint, grpc::ClientContext* context,
          etcdserverpb::TxnResponse* response) {
        return endpoint.kv->Txn(context, request, response);
      });
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(
    int64_t ttl_s) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_s);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> response =
      impl_->Call<etcdserverpb::LeaseGrantResponse>(
          "LeaseGrant", impl_->DeadlineAfter(options_.rpc_timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              etcdserverpb::LeaseGrantResponse* out) {
            return endpoint.lease->LeaseGrant(context, request, out);
          });
  if (response.ok() && !response->error().empty()) {
    return absl::InternalError(
        absl::StrCat("etcd LeaseGrant: ", response->error()));
  }
  return response;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  return impl_
      ->Call<etcdserverpb::LeaseRevokeResponse>(
          "LeaseRevoke", impl_->DeadlineAfter(options_.rpc_timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              etcdserverpb::LeaseRevokeResponse* out) {
            return endpoint.lease->LeaseRevoke(context, request, out);
          })
      .status();
}

absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> EtcdClient::LeaseTimeToLive(
    int64_t lease_id) {
  etcdserverpb::LeaseTimeToLiveRequest request;
  request.set_id(lease_id);
  return impl_->Call<etcdserverpb::LeaseTimeToLiveResponse>(
      "LeaseTimeToLive", impl_->DeadlineAfter(options_.rpc_timeout), true,
      [&](Endpoint& endpoint, grpc::ClientContext* context,
          etcdserverpb::LeaseTimeToLiveResponse* out) {
        return endpoint.lease->LeaseTimeToLive(context, request, out);
      });
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id) {
  return LeaseKeepAliveOnce(lease_id, options_.rpc_timeout);
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id,
                                                       absl::Duration timeout) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_id);
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> response =
      impl_->Call<etcdserverpb::LeaseKeepAliveResponse>(
          "LeaseKeepAlive", impl_->DeadlineAfter(timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              etcdserverpb::LeaseKeepAliveResponse* out) {
            std::unique_ptr<grpc::ClientReaderWriter<
                etcdserverpb::LeaseKeepAliveRequest,
                etcdserverpb::LeaseKeepAliveResponse>>
                stream = endpoint.lease->LeaseKeepAlive(context);
            if (!stream->Write(request)) return stream->Finish();
            stream->WritesDone();
            if (!stream->Read(out)) {
              grpc::Status status = stream->Finish();
              if (status.ok()) {
                return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "stream ended without a response");
              }
              return status;
            }
            // One answer is all this needs; the stream's own status does
            // not matter any more.
            context->TryCancel();
            (void)stream->Finish();
            return grpc::Status::OK;
          });
  if (!response.ok()) return response.status();
  if (response->ttl() <= 0) {
    return absl::NotFoundError(absl::StrCat(
        "etcd LeaseKeepAlive: lease ", lease_id, " has expired or was revoked"));
  }
  return response->ttl();
}

absl::StatusOr<v3electionpb::CampaignResponse> EtcdClient::Campaign(
    const std::string& name, int64_t lease_id, const std::string& value,
    absl::Duration timeout) {
  v3electionpb::CampaignRequest request;
  request.set_name(name);
  request.set_lease(lease_id);
  request.set_value(value);
  const absl::Time deadline = impl_->DeadlineAfter(timeout);
  absl::StatusOr<v3electionpb::CampaignResponse> response =
      impl_->Call<v3electionpb::CampaignResponse>(
          "Campaign", deadline, true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              v3electionpb::CampaignResponse* out) {
            {
              absl::MutexLock lock(&impl_->campaigns_mu);
              if (impl_->campaigns_cancelled) {
                return grpc::Status(grpc::StatusCode::CANCELLED, "campaigns cancelled");
              }
              impl_->campaigns.insert(context);
            }
            grpc::Status status = endpoint.election->Campaign(context, request, out);
            absl::MutexLock lock(&impl_->campaigns_mu);
            impl_->campaigns.erase(context);
            return status;
          });
  // etcd's own context may run out first and come back as UNKNOWN "context
  // deadline exceeded"; to the caller both mean "not leader within timeout".
  if (!response.ok() &&
      response.status().code() != absl::StatusCode::kDeadlineExceeded &&
      deadline != absl::InfiniteFuture() && RealClock::Get()->Now() >= deadline &&
      absl::StrContains(response.status().message(), "context deadline exceeded")) {
    return absl::DeadlineExceededError(response.status().message());
  }
  return response;
}

absl::Status EtcdClient::Observe(
    const std::string& name, absl::Duration timeout,
    const std::function<bool(const v3electionpb::LeaderResponse&)>& on_leader) {
  std::unique_ptr<grpc::ClientContext> context = NewStreamContext();
  context->set_deadline(absl::ToChronoTime(impl_->DeadlineAfter(timeout)));
  {
    absl::MutexLock lock(&impl_->campaigns_mu);
    if (impl_->campaigns_cancelled) return absl::CancelledError("election calls cancelled");
    impl_->campaigns.insert(context.get());
  }
  v3electionpb::LeaderRequest request;
  request.set_name(name);
  auto reader = election_stub()->Observe(context.get(), request);
  v3electionpb::LeaderResponse response;
  bool stopped = false;
  while (reader->Read(&response)) {
    if (!on_leader(response)) {
      stopped = true;
      context->TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&impl_->campaigns_mu);
    impl_->campaigns.erase(context.get());
  }
  if (stopped) return absl::OkStatus();
  // A stream that fails moves the next Observe to another endpoint.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) RotateEndpoint();
  if (status.ok()) return absl::UnavailableError("etcd Observe: stream ended");
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd Observe: ", status.error_message()));
}

void EtcdClient::CancelCampaigns() {
  absl::MutexLock lock(&impl_->campaigns_mu);
  impl_->campaigns_cancelled = true;
  for (grpc::ClientContext* context : impl_->campaigns) context->TryCancel();
}

absl::Status EtcdClient::Proclaim(const v3electionpb::LeaderKey& leader,
                                  const std::string& value) {
  v3electionpb::ProclaimRequest request;
  *request.mutable_leader() = leader;
  request.set_value(value);
  return impl_
      ->Call<v3electionpb::ProclaimResponse>(
          "Proclaim", impl_->DeadlineAfter(options_.rpc_timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              v3electionpb::ProclaimResponse* out) {
            return endpoint.election->Proclaim(context, request, out);
          })
      .status();
}

absl::StatusOr<v3electionpb::LeaderResponse> EtcdClient::Leader(
    const std::string& name) {
  v3electionpb::LeaderRequest request;
  request.set_name(name);
  absl::StatusOr<v3electionpb::LeaderResponse> response =
      impl_->Call<v3electionpb::LeaderResponse>(
          "Leader", impl_->DeadlineAfter(options_.rpc_timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              v3electionpb::LeaderResponse* out) {
            return endpoint.election->Leader(context, request, out);
          });
  // etcd answers UNKNOWN "election: no leader" when nobody campaigns.
  if (!response.ok() &&
      absl::StrContains(response.status().message(), "election: no leader")) {
    return absl::NotFoundError(response.status().message());
  }
  if (response.ok() && !response->has_kv()) {
    return absl::NotFoundError(absl::StrCat("etcd Leader: election \"", name,
                                            "\" has no leader"));
  }
  return response;
}

absl::Status EtcdClient::Resign(const v3electionpb::LeaderKey& leader) {
  v3electionpb::ResignRequest request;
  *request.mutable_leader() = leader;
  return impl_
      ->Call<v3electionpb::ResignResponse>(
          "Resign", impl_->DeadlineAfter(options_.rpc_timeout), true,
          [&](Endpoint& endpoint, grpc::ClientContext* context,
              v3electionpb::ResignResponse* out) {
            return endpoint.election->Resign(context, request, out);
          })
      .status();
}

std::unique_ptr<grpc::ClientContext> EtcdClient::NewStreamContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  const std::string token = impl_->Token();
  if (!token.empty()) context->AddMetadata("token", token);
  return context;
}

etcdserverpb::Watch::Stub* EtcdClient::watch_stub() {
  return impl_->endpoints[impl_->Current()]->watch.get();
}

v3electionpb::Election::Stub* EtcdClient::election_stub() {
  return impl_->endpoints[impl_->Current()]->election.get();
}

void EtcdClient::RotateEndpoint() {
  absl::MutexLock lock(&impl_->mu);
  impl_->current = (impl_->current + 1) % impl_->endpoints.size();
}

// ---------------------------------------------------------------------------
// LeaseKeeper

LeaseKeeper::LeaseKeeper(EtcdClient* client, const Clock* clock, int64_t lease_id, int64_t ttl_s,
                         std::function<void(const absl::Status& why)> on_lost)
    : client_(client),
      clock_(clock),
      lease_id_(lease_id),
      ttl_s_(ttl_s),
      on_lost_(std::move(on_lost)),
      thread_([this] { Run(); }) {}

LeaseKeeper::~LeaseKeeper() {
  stop_.store(true);
  stopping_.Notify();
  thread_.join();
}

void LeaseKeeper::Run() {
  const Clock* clock = clock_;
  auto lose = [this](const absl::Status& why) {
    lost_.store(true);
    JLOG(WARNING) << "etcd lease " << lease_id_ << " lost: " << why;
    if (on_lost_) on_lost_(why);
  };
  if (ttl_s_ <= 0) {
    lose(absl::InvalidArgumentError(
        absl::StrCat("lease ", lease_id_, ": TTL ", ttl_s_, " is not positive")));
    return;
  }
  const absl::Duration ttl = absl::Seconds(ttl_s_);
  const absl::Duration interval = ttl / 3;
  // Retries after a failed keep-alive come sooner than the regular interval.
  const absl::Duration retry = std::min(interval, absl::Milliseconds(250));
  // The lease was granted or renewed just before the keeper started.
  absl::Time valid_until = clock->Now() + ttl;
  absl::Status last_error;
  while (!stop_.load()) {
    const absl::Time sent = clock->Now();
    if (sent >= valid_until) {
      lose(absl::DeadlineExceededError(absl::StrCat(
          "lease ", lease_id_, ": no keep-alive succeeded within its TTL of ",
          ttl_s_, "s; last error: ", last_error.ToString())));
      return;
    }
    const absl::Duration timeout =
        std::min(client_->options().rpc_timeout, valid_until - sent);
    absl::StatusOr<int64_t> renewed = client_->LeaseKeepAliveOnce(lease_id_, timeout);
    if (stop_.load()) return;
    absl::Time next;
    if (renewed.ok()) {
      valid_until = sent + ttl;
      next = sent + interval;
      last_error = absl::OkStatus();
    } else if (renewed.status().code() == absl::StatusCode::kNotFound) {
      lose(renewed.status());
      return;
    } else {
      if (last_error.ok() || last_error.code() != renewed.status().code()) {
        JLOG(WARNING) << "etcd lease " << lease_id_
                      << " keep-alive failed (retrying): " << renewed.status();
      }
      last_error = renewed.status();
      next = clock->Now() + retry;
    }
    if (clock->WaitUntil(std::min(next, valid_until), &stopping_)) return;
  }
}

// ---------------------------------------------------------------------------
// EtcdWatch

// The watch thread's state. `mu` guards what the destructor and
// RequestProgress touch from other threads: the live stream and its context.
struct EtcdWatch::Impl {
  using Stream = grpc::ClientReaderWriter<etcdserverpb::WatchRequest,
                                          etcdserverpb::WatchResponse>;

  void Run();
  // Loads the prefix at one revision (paged) and hands it to on_reset.
  absl::Status LoadSnapshot();
  // One watch stream, from `resume_revision` + 1 until it ends.
  absl::Status WatchStream(bool* created);
  // Waits `duration`; false when the watch is being destroyed.
  bool Sleep(absl::Duration duration);
  bool Stopping();
  void WriteProgressRequest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  EtcdClient* client = nullptr;
  std::string prefix;
  std::string range_end;
  ResetFn on_reset;
  EventsFn on_events;

  // Owned by the watch thread.
  // Every event up to this revision has been delivered: the next stream
  // starts after it.
  int64_t resume_revision = 0;
  // The highest revision reported to the callbacks (progress notifications
  // may move it past resume_revision).
  int64_t reported_revision = 0;
  bool need_reset = true;

  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;
  Stream* stream ABSL_GUARDED_BY(mu) = nullptr;
  bool created ABSL_GUARDED_BY(mu) = false;
  bool progress_pending ABSL_GUARDED_BY(mu) = false;

  std::thread thread;
};

EtcdWatch::EtcdWatch(EtcdClient* client, std::string prefix, ResetFn on_reset,
                     EventsFn on_events)
    : impl_(std::make_unique<Impl>()) {
  impl_->client = client;
  impl_->range_end = PrefixRangeEnd(prefix);
  impl_->prefix = std::move(prefix);
  impl_->on_reset = std::move(on_reset);
  impl_->on_events = std::move(on_events);
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] { impl->Run(); });
}

EtcdWatch::~EtcdWatch() {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stopping = true;
    if (impl_->context != nullptr) impl_->context->TryCancel();
  }
  impl_->thread.join();
}

void EtcdWatch::RequestProgress() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->stream != nullptr && impl_->created) {
    impl_->WriteProgressRequest();
  } else {
    impl_->progress_pending = true;  // sent once the next stream is created
  }
}

void EtcdWatch::Impl::WriteProgressRequest() {
  etcdserverpb::WatchRequest request;
  request.mutable_progress_request();
  progress_pending = false;
  if (!stream->Write(request)) {
    // The stream is failing; the read side sees it and reconnects.
    progress_pending = true;
  }
}

bool EtcdWatch::Impl::Stopping() {
  absl::MutexLock lock(&mu);
  return stopping;
}

bool EtcdWatch::Impl::Sleep(absl::Duration duration) {
  absl::MutexLock lock(&mu);
  return !mu.AwaitWithTimeout(absl::Condition(&stopping), duration);
}

void EtcdWatch::Impl::Run() {
  absl::Duration backoff = kWatchMinBackoff;
  bool reconnecting = false;
  while (!Stopping()) {
    if (need_reset) {
      if (absl::Status status = LoadSnapshot(); !status.ok()) {
        JLOG(WARNING) << "etcd watch " << prefix << ": loading failed: " << status;
        if (!Sleep(backoff)) return;
        backoff = std::min(backoff * 2, kWatchMaxBackoff);
        continue;
      }
      need_reset = false;
    } else if (reconnecting) {
      // A cheap Range first: it moves the client to an endpoint that answers
      // and refreshes an expired auth token before the stream opens.
      etcdserverpb::RangeRequest probe;
      probe.set_key(prefix);
      probe.set_range_end(range_end);
      probe.set_count_only(true);
      if (absl::StatusOr<etcdserverpb::RangeResponse> response = client->Range(probe);
          !response.ok()) {
        if (!Sleep(backoff)) return;
        backoff = std::min(backoff * 2, kWatchMaxBackoff);
        continue;
      }
    }
    bool created = false;
    absl::Status status = WatchStream(&created);
    if (Stopping()) return;
    if (created) backoff = kWatchMinBackoff;
    if (need_reset) continue;  // compacted: reload at once
    JLOG(WARNING) << "etcd watch " << prefix << ": stream ended (" << status
                  << "); resuming from revision " << resume_revision + 1;
    client->RotateEndpoint();
    reconnecting = true;
    if (!Sleep(backoff)) return;
    backoff = std::min(backoff * 2, kWatchMaxBackoff);
  }
}

absl::Status EtcdWatch::Impl::LoadSnapshot() {
  std::vector<std::pair<std::string, std::string>> snapshot;
  int64_t revision = 0;
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(range_end);
  request.set_limit(kSnapshotPageKeys);
  for (;;) {
    request.set_revision(revision);  // 0 on the first page: the newest
    absl::StatusOr<etcdserverpb::RangeResponse> response = client->Range(request);
    if (!response.ok()) return response.status();
    if (revision == 0) revision = response->header().revision();
    for (mvccpb::KeyValue& kv : *response->mutable_kvs()) {
      snapshot.emplace_back(std::move(*kv.mutable_key()),
                            std::move(*kv.mutable_value()));
    }
    if (!response->more() || response->kvs_size() == 0) break;
    request.set_key(snapshot.back().first + std::string(1, '\0'));
  }
  resume_revision = revision;
  reported_revision = revision;
  on_reset(snapshot, revision);
  return absl::OkStatus();
}

absl::Status EtcdWatch::Impl::WatchStream(bool* created_out) {
  std::unique_ptr<grpc::ClientContext> stream_context = client->NewStreamContext();
  etcdserverpb::Watch::Stub* stub = client->watch_stub();
  {
    // Published before the call starts, so that the destructor can cancel
    // it whenever it comes.
    absl::MutexLock lock(&mu);
    if (stopping) return absl::CancelledError("watch stopped");
    context = stream_context.get();
    created = false;
  }
  std::unique_ptr<Stream> owned = stub->Watch(stream_context.get());
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(prefix);
  create->set_range_end(range_end);
  create->set_start_revision(resume_revision + 1);
  // No other thread writes before the created response; a failed write
  // shows in the first Read.
  owned->Write(request);
  {
    absl::MutexLock lock(&mu);
    stream = owned.get();
  }

  etcdserverpb::WatchResponse response;
  std::vector<WatchEvent> events;
  absl::Status ended;
  while (owned->Read(&response)) {
    if (response.compact_revision() != 0) {
      JLOG(WARNING) << "etcd watch " << prefix << ": revision "
                    << resume_revision + 1 << " was compacted (compact revision "
                    << response.compact_revision() << "); reloading";
      need_reset = true;
      break;
    }
    if (response.canceled()) {
      JLOG(WARNING) << "etcd watch " << prefix << ": canceled by etcd ("
                    << response.cancel_reason() << "); reloading";
      need_reset = true;
      break;
    }
    if (response.created()) {
      *created_out = true;
      absl::MutexLock lock(&mu);
      created = true;
      if (progress_pending) WriteProgressRequest();
      continue;
    }
    if (response.events_size() == 0) {
      // A progress notification: nothing changed up to its revision.
      reported_revision = std::max(reported_revision, response.header().revision());
      on_events({}, reported_revision);
      continue;
    }
    events.clear();
    events.reserve(response.events_size());
    for (mvccpb::Event& event : *response.mutable_events()) {
      mvccpb::KeyValue* kv = event.mutable_kv();
      if (kv->mod_revision() <= resume_revision) continue;  // seen already
      WatchEvent out;
      out.type = event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                       : WatchEvent::Type::kPut;
      out.key = std::move(*kv->mutable_key());
      if (out.type == WatchEvent::Type::kPut) {
        out.value = std::move(*kv->mutable_value());
      }
      out.mod_revision = kv->mod_revision();
      events.push_back(std::move(out));
    }
    if (events.empty()) continue;
    // Events come in revision order and one revision never spans two
    // responses, so everything up to the last one has been seen.
    resume_revision = events.back().mod_revision;
    reported_revision = std::max(reported_revision, resume_revision);
    on_events(events, reported_revision);
  }
  {
    absl::MutexLock lock(&mu);
    context = nullptr;
    stream = nullptr;
    created = false;
  }
  // Finish waits for the server's status; after a break the stream is
  // still open, so end it here first.
  if (need_reset) stream_context->TryCancel();
  grpc::Status status = owned->Finish();
  if (need_reset) return absl::OkStatus();
  if (status.ok()) return absl::UnavailableError("etcd closed the watch stream");
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd Watch: ", status.error_message()));
}

}  // namespace joule::etcd
