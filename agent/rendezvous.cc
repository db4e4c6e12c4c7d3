#include "agent/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace joule {

absl::StatusOr<std::pair<int32_t, int32_t>> ParsePortRange(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text == "none") return std::pair<int32_t, int32_t>(0, 0);
  std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  int32_t low = 0, high = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &low) ||
      !absl::SimpleAtoi(parts[1], &high)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not LOW-HIGH (e.g. ", kDefaultTaskPorts, ") or none"));
  }
  if (low < 1024 || high > 65535 || low > high) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d-%d: ports must satisfy 1024 <= LOW <= HIGH <= 65535", low, high));
  }
  return std::pair<int32_t, int32_t>(low, high);
}

std::string RouteAddress(absl::string_view target) {
  const std::string fallback = "127.0.0.1";
  std::string first(target.substr(0, target.find(',')));
  // "dns:///host:port" and similar gRPC forms: the host:port after the last '/'.
  if (size_t slash = first.rfind('/'); slash != std::string::npos) first = first.substr(slash + 1);
  const size_t colon = first.rfind(':');
  if (colon == std::string::npos) return fallback;
  std::string host = first.substr(0, colon);
  const std::string port = first.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return fallback;
  }
  std::string address = fallback;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    char text[INET6_ADDRSTRLEN] = {};
    const bool ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
    close(fd);
    if (!ok) continue;
    const void* raw = local.ss_family == AF_INET
                          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
    if (inet_ntop(local.ss_family, raw, text, sizeof(text)) != nullptr) {
      address = text;
      break;
    }
  }
  freeaddrinfo(found);
  return address;
}

absl::Status CheckPortFree(int32_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  // As a listener would bind it (TIME_WAIT remnants of an earlier run do
  // not make it busy).
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  const int error = errno;
  close(fd);
  if (bound == 0) return absl::OkStatus();
  return absl::UnavailableError(absl::StrFormat("rendezvous port %d is in use on this node (%s)",
                                                port, std::strerror(error)));
}

}  // namespace joule
