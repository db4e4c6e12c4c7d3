#ifndef JOULE_SCHEDULER_AUTH_IDENTITY_H_
#define JOULE_SCHEDULER_AUTH_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// What an authenticated caller may do (README, "Security"):
//   kUser:     submit jobs, and see, watch, cancel and read the logs of its
//              own jobs;
//   kOperator: every job, power caps, nodes;
//   kAdmin:    what operators can do. Tokens live in a file the operator
//              manages, so there is nothing more to manage through the API
//              today; the role exists so tokens can say what they are for.
// Ordered: a higher role can do everything a lower one can.
enum class Role { kUser = 1, kOperator = 2, kAdmin = 3 };

absl::string_view RoleName(Role role);
// "user", "operator" or "admin"; INVALID_ARGUMENT names the word otherwise.
absl::StatusOr<Role> ParseRole(absl::string_view name);

// Who is calling the client API.
struct Identity {
  std::string user;
  Role role = Role::kUser;
  // How it was proved: "token", "certificate" or "insecure".
  std::string method;

  bool AtLeast(Role other) const { return role >= other; }
};

// A certificate's SPIFFE ID, spiffe://TRUST-DOMAIN/KIND/NAME, with KIND
// "node" for agents and "user" for people and services using joulectl.
struct SpiffeName {
  enum class Kind { kNode, kUser };
  Kind kind = Kind::kNode;
  std::string name;
};

// Parses `uri` and checks its trust domain. INVALID_ARGUMENT says what is
// wrong: another scheme, another trust domain, an unknown kind, an empty
// name or extra path segments.
absl::StatusOr<SpiffeName> ParseSpiffeId(absl::string_view uri,
                                         absl::string_view trust_domain);

}  // namespace joule

#endif  // JOULE_SCHEDULER_AUTH_IDENTITY_H_
