#ifndef JOULE_AGENT_RENDEZVOUS_H_
#define JOULE_AGENT_RENDEZVOUS_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// What the agent needs for a gang's rendezvous (torch.distributed's
// MASTER_ADDR and MASTER_PORT): the address other nodes reach this node's
// tasks at, the ports it hands out, and whether one is free.
// Functions of the host's network stack; thread-safe.

namespace joule {

// The default --task-ports.
inline constexpr char kDefaultTaskPorts[] = "29500-29999";

// "LOW-HIGH" (1024 <= LOW <= HIGH <= 65535), or "" / "none" for no ports
// ({0, 0}). INVALID_ARGUMENT names what is wrong.
absl::StatusOr<std::pair<int32_t, int32_t>> ParsePortRange(absl::string_view text);

// The local address of this host's route to `target` ("HOST:PORT", the
// first of a comma-separated list): what the peers of the scheduler, the
// other nodes, most likely reach this one at. No packet is sent (a UDP
// socket's connect only picks the route). "127.0.0.1" when the target does
// not resolve or has no route.
std::string RouteAddress(absl::string_view target);

// OK when a TCP listener could bind `port` on every address now;
// UNAVAILABLE "port P is in use on this node" when not.
absl::Status CheckPortFree(int32_t port);

}  // namespace joule

#endif  // JOULE_AGENT_RENDEZVOUS_H_
