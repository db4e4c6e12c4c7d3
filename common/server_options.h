#ifndef JOULE_COMMON_SERVER_OPTIONS_H_
#define JOULE_COMMON_SERVER_OPTIONS_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"

namespace joule {

// Concurrent streams one client connection may hold open. An agent needs one;
// a client that multiplexes more (a load generator) opens more connections.
inline constexpr int kMaxStreamsPerConnection = 64;

// Settings every Joule gRPC server gets, so that what a peer sends is
// bounded before it costs memory:
//  - `max_receive_bytes` per message (gRPC refuses larger ones before
//    decoding them);
//  - HTTP/2 keepalive and ping policy: clients may ping every second
//    (Joule's own clients ping every 2 s, SetFailoverChannelArgs), a third
//    ping faster than that closes the connection with GOAWAY (a ping flood
//    costs nothing), and the server pings idle clients itself every 30 s;
//  - at most kMaxStreamsPerConnection concurrent streams per connection and
//    one memory quota for the whole server (gRPC sheds load past it instead
//    of growing).
void ApplyServerLimits(grpc::ServerBuilder* builder, int max_receive_bytes);

// OK when `listen` has the form HOST:PORT (HOST may be empty for every
// address, or a bracketed IPv6 address) with PORT a number in [0, 65535];
// otherwise INVALID_ARGUMENT naming `flag`. For configuration checks.
absl::Status CheckListenAddress(const std::string& listen, const std::string& flag);

// The end of a --check-config run: each of `problems` on `err` as
// "PROGRAM: problem" and their count, exit status 2; or "PROGRAM:
// configuration OK" on `out`, exit status 0.
int ReportConfigCheck(const std::string& program, const std::vector<std::string>& problems,
                      std::ostream& out, std::ostream& err);

// True when `listen` ("HOST:PORT") binds a loopback address only
// (127.0.0.0/8, ::1, localhost).
bool IsLoopbackListen(const std::string& listen);

// For plaintext servers: OK when `listen` ("HOST:PORT") binds a loopback
// address only (127.0.0.0/8, ::1, localhost); otherwise INVALID_ARGUMENT
// naming `flag` and saying why.
absl::Status RequireLoopback(const std::string& listen, const std::string& flag);

// For --insecure: RequireLoopback on `listen` (--listen) and, when one is
// given as HOST:PORT, on `metrics_listen` (--metrics-listen; a malformed
// address is left for the metrics server to name).
absl::Status RequireLoopbackServers(const std::string& listen,
                                    const std::string& metrics_listen);

}  // namespace joule

#endif  // JOULE_COMMON_SERVER_OPTIONS_H_
