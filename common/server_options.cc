#include "common/server_options.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpcpp/resource_quota.h"

namespace joule {

void ApplyServerLimits(grpc::ServerBuilder* builder, int max_receive_bytes) {
  builder->SetMaxReceiveMessageSize(max_receive_bytes);
  // Ping policy: a client may ping without data at most once a second; the
  // second violation ends the connection.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // The server's own keepalive: notices vanished clients.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30 * 1000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10 * 1000);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxStreamsPerConnection);
  // A connection that has not finished its TLS/HTTP/2 handshake in 10 s
  // is dropped.
  builder->AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10 * 1000);
  static grpc::ResourceQuota* quota = [] {
    auto* q = new grpc::ResourceQuota("joule-server");
    q->Resize(size_t{1} << 30);
    return q;
  }();
  builder->SetResourceQuota(*quota);
}

absl::Status CheckListenAddress(const std::string& listen, const std::string& flag) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535 || listen.find_first_of(" \t\n") != std::string::npos ||
      (listen[0] == '[' && listen[colon - 1] != ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", listen, "\": want HOST:PORT with a port in 0..65535"));
  }
  return absl::OkStatus();
}

int ReportConfigCheck(const std::string& program, const std::vector<std::string>& problems,
                      std::ostream& out, std::ostream& err) {
  for (const std::string& problem : problems) err << program << ": " << problem << "\n";
  if (!problems.empty()) {
    err << program << ": " << problems.size() << " configuration problem"
        << (problems.size() == 1 ? "" : "s") << "\n";
    return 2;
  }
  out << program << ": configuration OK" << std::endl;
  return 0;
}

bool IsLoopbackListen(const std::string& listen) {
  absl::string_view host = listen;
  const size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  bool loopback = host == "localhost";
  in_addr v4;
  in6_addr v6;
  const std::string text(host);
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return loopback;
}

absl::Status RequireLoopback(const std::string& listen, const std::string& flag) {
  if (IsLoopbackListen(listen)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " ", listen, ": without TLS (--insecure) only a loopback address "
      "(127.0.0.1, ::1, localhost) may be used; configure TLS to listen elsewhere"));
}

absl::Status RequireLoopbackServers(const std::string& listen,
                                    const std::string& metrics_listen) {
  if (absl::Status status = RequireLoopback(listen, "--listen"); !status.ok()) return status;
  if (metrics_listen.find(':') == std::string::npos) return absl::OkStatus();
  return RequireLoopback(metrics_listen, "--metrics-listen");
}

}  // namespace joule
