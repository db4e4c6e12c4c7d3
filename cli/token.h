#ifndef JOULE_CLI_TOKEN_H_
#define JOULE_CLI_TOKEN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace joule {

// A new API token: "jt_" and 64 hex digits of the kernel's randomness
// (getrandom, 256 bits). UNAVAILABLE if the kernel gives none.
absl::StatusOr<std::string> NewApiToken();

// The scheduler's --tokens-file line for `token` (its SHA-256, never the
// token): "token sha256:HEX USER ROLE[ expires=TIME]".
std::string TokenFileLine(const std::string& token, const std::string& user,
                          const std::string& role, std::optional<absl::Time> expires);

}  // namespace joule

#endif  // JOULE_CLI_TOKEN_H_
