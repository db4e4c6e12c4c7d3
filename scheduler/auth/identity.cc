#include "scheduler/auth/identity.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace joule {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  if (name == "user") return Role::kUser;
  if (name == "operator") return Role::kOperator;
  if (name == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(absl::StrCat(
      "role \"", name, "\": must be one of user, operator, admin"));
}

absl::StatusOr<SpiffeName> ParseSpiffeId(absl::string_view uri,
                                         absl::string_view trust_domain) {
  constexpr absl::string_view kScheme = "spiffe://";
  if (!absl::StartsWith(uri, kScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity \"", uri, "\": not a spiffe:// URI"));
  }
  const std::vector<absl::string_view> parts =
      absl::StrSplit(uri.substr(kScheme.size()), '/');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "identity \"", uri, "\": expected spiffe://", trust_domain, "/node/NAME or /user/NAME"));
  }
  if (parts[0] != trust_domain) {
    return absl::InvalidArgumentError(absl::StrCat(
        "identity \"", uri, "\": trust domain \"", parts[0], "\" is not \"", trust_domain, "\""));
  }
  SpiffeName out;
  if (parts[1] == "node") {
    out.kind = SpiffeName::Kind::kNode;
  } else if (parts[1] == "user") {
    out.kind = SpiffeName::Kind::kUser;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "identity \"", uri, "\": kind \"", parts[1], "\" is neither node nor user"));
  }
  if (parts[2].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("identity \"", uri, "\": empty name"));
  }
  out.name = std::string(parts[2]);
  return out;
}

}  // namespace joule
