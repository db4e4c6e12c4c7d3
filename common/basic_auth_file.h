#ifndef JOULE_COMMON_BASIC_AUTH_FILE_H_
#define JOULE_COMMON_BASIC_AUTH_FILE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace joule {

// Users and password hashes for HTTP basic auth (the metrics endpoints'
// --metrics-auth-file), from a file that an operator or a Kubernetes Secret
// maintains. One user per line; blank lines and # comments are skipped:
//   prometheus sha256:<64 hex digits of SHA-256(password)>
// e.g. made with: printf '%s' "$PASSWORD" | sha256sum
//
// 1. Load reads and parses the file. A malformed line is INVALID_ARGUMENT
//    naming FILE:LINE (never the line itself: it may hold a secret); an
//    unreadable file names the errno text.
// 2. Check(user, password) reads the file again when `reload_interval` has
//    passed since the last read (on the injected clock), so that a rotated
//    Secret takes effect within that interval without a restart. A version
//    that cannot be read or does not parse fails closed: no one is let in
//    until it is fixed (logged once per version).
// 3. The password's SHA-256 is compared with the stored one in constant
//    time; an unknown user is compared with a dummy hash, so the time does
//    not tell which users exist.
//
// Thread-safe; state guarded by mu_ (Check runs on the HTTP server's
// worker threads).
class BasicAuthFile {
 public:
  // user -> hash (64 lower-case hex digits).
  using Credentials = std::map<std::string, std::string, std::less<>>;

  static absl::StatusOr<std::unique_ptr<BasicAuthFile>> Load(
      std::string path, const Clock* clock, absl::Duration reload_interval = absl::Seconds(2));

  // Parses file contents; `source` names the file in errors.
  static absl::StatusOr<Credentials> Parse(absl::string_view text, absl::string_view source);

  // Whether `user` with `password` is in the file as it is now (read again
  // at most every reload_interval).
  bool Check(absl::string_view user, absl::string_view password);

 private:
  BasicAuthFile(std::string path, const Clock* clock, absl::Duration reload_interval)
      : path_(std::move(path)), clock_(clock), reload_interval_(reload_interval) {}

  // Reads and parses the file when it changed; keeps the error otherwise.
  void Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const Clock* const clock_;
  const absl::Duration reload_interval_;

  absl::Mutex mu_;
  absl::Time last_read_ ABSL_GUARDED_BY(mu_);
  // Whether the last read succeeded, the contents it got, what they gave,
  // and why logins are refused (OK when they parsed).
  bool readable_ ABSL_GUARDED_BY(mu_) = false;
  std::string contents_ ABSL_GUARDED_BY(mu_);
  Credentials credentials_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_COMMON_BASIC_AUTH_FILE_H_
