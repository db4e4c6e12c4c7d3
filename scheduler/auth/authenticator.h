#ifndef JOULE_SCHEDULER_AUTH_AUTHENTICATOR_H_
#define JOULE_SCHEDULER_AUTH_AUTHENTICATOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/auth/identity.h"
#include "scheduler/auth/token_file.h"

namespace joule {

struct AuthOptions {
  // Plaintext on loopback: no identity is proved. Every client is the
  // operator-level user "local" (one machine, one person), and any agent
  // stream may speak for any node name.
  bool insecure = false;
  // The SPIFFE trust domain certificates must name.
  std::string trust_domain = "joule";
  // Bearer tokens and certificate roles; null: client certificates only.
  TokenFile* tokens = nullptr;
};

// Proves who is at the other end of a call, from what gRPC's TLS layer
// verified (the peer's SPIFFE ID, spiffe://TRUST-DOMAIN/{node,user}/NAME,
// from the only spiffe:// URI SAN of a certificate signed by the CA given
// with --tls-ca) and the bearer token in the `authorization` metadata.
//
// Client calls: a bearer token wins over a certificate; a user certificate
// is the user it names with the role from the token file's `cert` lines; a
// node certificate is refused (agents do not use the client API).
// Agent streams: only a node certificate, which binds the stream to that
// node.
//
// Thread-safe: const apart from the TokenFile, which is thread-safe.
class Authenticator {
 public:
  explicit Authenticator(AuthOptions options) : options_(std::move(options)) {}

  bool insecure() const { return options_.insecure; }

  // The client API caller. UNAUTHENTICATED when nothing proves an identity
  // or a token is wrong or expired; PERMISSION_DENIED for a node
  // certificate.
  absl::StatusOr<Identity> AuthenticateClient(const grpc::ServerContextBase& context) const;

  // The node an agent stream may speak for; "" when insecure (any node).
  // UNAUTHENTICATED without a certificate, PERMISSION_DENIED for a user
  // certificate or another trust domain.
  absl::StatusOr<std::string> AuthenticateNode(const grpc::ServerContextBase& context) const;

 private:
  // The verified peer's SPIFFE ID, or "" when it presented no certificate.
  static std::string PeerSpiffeId(const grpc::ServerContextBase& context);

  const AuthOptions options_;
};

// The metadata key and scheme of a bearer token, as joulectl sends it.
inline constexpr char kAuthorizationMetadataKey[] = "authorization";
inline constexpr char kBearerPrefix[] = "Bearer ";

}  // namespace joule

#endif  // JOULE_SCHEDULER_AUTH_AUTHENTICATOR_H_
