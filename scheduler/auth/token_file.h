#ifndef JOULE_SCHEDULER_AUTH_TOKEN_FILE_H_
#define JOULE_SCHEDULER_AUTH_TOKEN_FILE_H_

#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "scheduler/auth/identity.h"

namespace joule {

// The API's bearer tokens and certificate roles, from a file the operator
// manages. Tokens are stored hashed: the file holds SHA-256 digests, never a
// token, so a copy of the file does not let anyone in.
//
// File format, one entry per line, '#' starts a comment:
//   token sha256:<64 hex digits> USER ROLE [expires=RFC3339-TIME]
//   cert USER ROLE
// A `token` line accepts the token whose SHA-256 is the digest, as USER with
// ROLE, until `expires` if given. A `cert` line gives ROLE to the client
// certificate spiffe://<trust-domain>/user/USER; a user certificate with no
// line has the role "user". `joulectl token create` prints both a new token
// and its line. User names follow the same rules as job users
// (ValidateUserName).
//
// Re-reading: Lookup checks the file's identity (inode, size, mtime) at most
// once per `recheck` and re-reads it when it changed, so tokens are added and
// revoked without a restart. A file that no longer parses fails closed:
// every lookup is UNAUTHENTICATED, naming the file and line, until it is
// fixed (a typo must not keep a revoked token alive).
//
// Thread-safe; state guarded by mu_ (file reads happen under it, never
// under the scheduler's lock).
class TokenFile {
 public:
  // Reads `path`; INVALID_ARGUMENT names the file, line and problem.
  static absl::StatusOr<std::unique_ptr<TokenFile>> Load(
      const std::string& path, const Clock* clock,
      absl::Duration recheck = absl::Seconds(2));

  // The identity a bearer token proves; UNAUTHENTICATED (without echoing
  // the token) when it is unknown or expired.
  absl::StatusOr<Identity> Lookup(absl::string_view token);

  // The role of a user certificate's USER: from a `cert` line, else kUser.
  Role CertificateRole(absl::string_view user);

  // Parses the text of a token file (for Load and tests). `name` is used in
  // errors.
  struct Entry {
    std::string user;
    Role role = Role::kUser;
    std::optional<absl::Time> expires;
  };
  struct Table {
    std::map<std::string, Entry> tokens;  // By lower-case hex digest.
    std::map<std::string, Role> certs;    // By user.
  };
  static absl::StatusOr<Table> Parse(absl::string_view text, absl::string_view name);

 private:
  TokenFile(std::string path, const Clock* clock, absl::Duration recheck)
      : path_(std::move(path)), clock_(clock), recheck_(recheck) {}

  // Re-reads the file if it changed since the last read.
  void MaybeReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const Clock* const clock_;
  const absl::Duration recheck_;

  absl::Mutex mu_;
  Table table_ ABSL_GUARDED_BY(mu_);
  // OK, or why the file last failed to parse (then nothing is accepted).
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  std::string file_version_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// A valid job owner / API user name: 1 to 64 characters of [a-z0-9._-],
// starting with a letter or digit (a POSIX portable user name in lower case,
// so it can be mapped to a system user on the nodes). INVALID_ARGUMENT names
// the rule.
absl::Status ValidateUserName(absl::string_view user);

}  // namespace joule

#endif  // JOULE_SCHEDULER_AUTH_TOKEN_FILE_H_
