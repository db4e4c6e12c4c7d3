#ifndef JOULE_COMMON_SHA256_H_
#define JOULE_COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace joule {

// SHA-256 of `data` (OpenSSL's libcrypto), as 64 lower-case hex digits:
// how passwords and tokens are stored, so that a file or a store that
// leaks does not leak them. Thread-safe.
std::string Sha256Hex(absl::string_view data);

// Whether `a` and `b` hold the same bytes, in a time that depends on their
// lengths only, never on where they first differ (CRYPTO_memcmp): for
// comparing a secret's hash with a stored one. Thread-safe.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace joule

#endif  // JOULE_COMMON_SHA256_H_
