#ifndef JOULE_COMMON_TLS_CREDENTIALS_H_
#define JOULE_COMMON_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"

namespace joule {

// PEM files for one side of a TLS connection. Paths, not contents: gRPC's
// file-watching certificate provider re-reads them every
// `refresh_interval_s`, so a certificate or key rotated in place (a
// Kubernetes Secret update, cert-manager) is used by new connections with no
// restart. Replace both files together (Kubernetes swaps the whole Secret
// directory through a symlink, which is atomic); a half-written pair is
// ignored until it is consistent again.
struct TlsFiles {
  // CA bundle that verifies the peer's certificate.
  std::string ca_file;
  // This side's certificate chain and its private key. The server always
  // needs them; a client only for mutual TLS.
  std::string cert_file;
  std::string key_file;
  // 0: read the files once (a short-lived client such as joulectl).
  int refresh_interval_s = 5;

  bool has_identity() const { return !cert_file.empty() || !key_file.empty(); }
};

// Checks that the named files exist and parse as PEM before gRPC gets them
// (gRPC itself only logs a failed load and refuses every handshake).
// `flag_prefix` names the flags in the error, e.g. "--tls" gives
// "--tls-cert /x: cannot read: No such file or directory".
// `need_identity`: the cert and key are required.
absl::Status CheckTlsFiles(const TlsFiles& files, const std::string& flag_prefix,
                           bool need_identity);

// Server credentials: serves `cert_file`/`key_file`; when `ca_file` is set,
// requests a client certificate and verifies it against `ca_file` if one is
// presented (clients may also authenticate with a bearer token instead; an
// agent's stream requires the certificate, see AgentIdentityFromContext).
std::shared_ptr<grpc::ServerCredentials> MakeServerTlsCredentials(const TlsFiles& files);

// Client credentials: verifies the server's certificate chain against
// `ca_file` and its name against the target (or `server_name` when set on
// the channel, see SetTlsServerName), and presents `cert_file`/`key_file`
// when given.
std::shared_ptr<grpc::ChannelCredentials> MakeClientTlsCredentials(const TlsFiles& files);

// Makes the channel check the server's certificate for `server_name` instead
// of the host part of the target (e.g. a certificate for
// "joule-scheduler.joule.svc" reached at 10.0.0.7:7070). Empty: no change.
void SetTlsServerName(const std::string& server_name, grpc::ChannelArguments* args);

}  // namespace joule

#endif  // JOULE_COMMON_TLS_CREDENTIALS_H_
