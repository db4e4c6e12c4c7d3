#include "cli/token.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace joule {

absl::StatusOr<std::string> NewApiToken() {
  unsigned char bytes[32];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t got = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(got);
  }
  return absl::StrCat(
      "jt_", absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes),
                                                      sizeof(bytes))));
}

std::string TokenFileLine(const std::string& token, const std::string& user,
                          const std::string& role, std::optional<absl::Time> expires) {
  std::string line = absl::StrCat("token sha256:", Sha256Hex(token), " ", user, " ", role);
  if (expires.has_value()) {
    absl::StrAppend(&line, " expires=",
                    absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *expires, absl::UTCTimeZone()));
  }
  return line;
}

}  // namespace joule
