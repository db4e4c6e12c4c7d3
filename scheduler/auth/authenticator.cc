#include "scheduler/auth/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace joule {

std::string Authenticator::PeerSpiffeId(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  std::vector<grpc::string_ref> ids = auth->FindPropertyValues("peer_spiffe_id");
  if (ids.size() != 1) return "";
  return std::string(ids[0].data(), ids[0].size());
}

absl::StatusOr<Identity> Authenticator::AuthenticateClient(
    const grpc::ServerContextBase& context) const {
  if (options_.insecure) {
    Identity local;
    local.user = "local";
    local.role = Role::kAdmin;
    local.method = "insecure";
    return local;
  }
  const auto& metadata = context.client_metadata();
  auto header = metadata.find(kAuthorizationMetadataKey);
  if (header != metadata.end()) {
    absl::string_view value(header->second.data(), header->second.size());
    if (!absl::ConsumePrefix(&value, kBearerPrefix) || value.empty()) {
      return absl::UnauthenticatedError(
          "the authorization header must be \"Bearer TOKEN\"");
    }
    if (options_.tokens == nullptr) {
      return absl::UnauthenticatedError(
          "this scheduler accepts no tokens (no --tokens-file); use a client certificate");
    }
    return options_.tokens->Lookup(value);
  }
  const std::string spiffe = PeerSpiffeId(context);
  if (spiffe.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send a bearer token (joulectl --token-file or JOULE_TOKEN) or "
        "a client certificate");
  }
  absl::StatusOr<SpiffeName> name = ParseSpiffeId(spiffe, options_.trust_domain);
  if (!name.ok()) return absl::PermissionDeniedError(name.status().message());
  if (name->kind != SpiffeName::Kind::kUser) {
    return absl::PermissionDeniedError(
        absl::StrCat("identity ", spiffe, " is a node: nodes cannot use the client API"));
  }
  if (absl::Status valid = ValidateUserName(name->name); !valid.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("identity ", spiffe, ": ", valid.message()));
  }
  Identity identity;
  identity.user = name->name;
  identity.role =
      options_.tokens != nullptr ? options_.tokens->CertificateRole(name->name) : Role::kUser;
  identity.method = "certificate";
  return identity;
}

absl::StatusOr<std::string> Authenticator::AuthenticateNode(
    const grpc::ServerContextBase& context) const {
  if (options_.insecure) return std::string();
  const std::string spiffe = PeerSpiffeId(context);
  if (spiffe.empty()) {
    return absl::UnauthenticatedError(
        "agent streams need a client certificate naming the node "
        "(spiffe://TRUST-DOMAIN/node/NAME) signed by the scheduler's --tls-ca");
  }
  absl::StatusOr<SpiffeName> name = ParseSpiffeId(spiffe, options_.trust_domain);
  if (!name.ok()) return absl::PermissionDeniedError(name.status().message());
  if (name->kind != SpiffeName::Kind::kNode) {
    return absl::PermissionDeniedError(
        absl::StrCat("identity ", spiffe, " is not a node: only agents open agent streams"));
  }
  return name->name;
}

}  // namespace joule
