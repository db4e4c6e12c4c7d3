#include "common/tls_credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace joule {
namespace {

// The whole file; false if it cannot be opened (errno says why).
bool ReadText(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

absl::Status CheckPem(const std::string& flag, const std::string& path,
                      const char* marker) {
  std::string text;
  if (!ReadText(path, &text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  if (!absl::StrContains(text, marker)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM file (no \"", marker, "\")"));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(
    const TlsFiles& files) {
  if (files.refresh_interval_s <= 0) {
    // Unreadable files read as empty: CheckTlsFiles has named them already.
    std::vector<grpc::experimental::IdentityKeyCertPair> identity;
    if (files.has_identity()) {
      identity.emplace_back();
      ReadText(files.key_file, &identity.back().private_key);
      ReadText(files.cert_file, &identity.back().certificate_chain);
    }
    if (files.ca_file.empty()) {
      return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(identity);
    }
    std::string ca;
    ReadText(files.ca_file, &ca);
    return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(ca, identity);
  }
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file, files.refresh_interval_s);
}

}  // namespace

absl::Status CheckTlsFiles(const TlsFiles& files, const std::string& flag_prefix,
                           bool need_identity) {
  if (need_identity && (files.cert_file.empty() || files.key_file.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_prefix, "-cert and ", flag_prefix, "-key are both needed"));
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag_prefix, "-cert and ", flag_prefix, "-key go together: give both or neither"));
  }
  if (!files.ca_file.empty()) {
    if (absl::Status ca = CheckPem(flag_prefix + "-ca", files.ca_file, "-----BEGIN CERTIFICATE");
        !ca.ok()) {
      return ca;
    }
  }
  if (!files.cert_file.empty()) {
    if (absl::Status cert =
            CheckPem(flag_prefix + "-cert", files.cert_file, "-----BEGIN CERTIFICATE");
        !cert.ok()) {
      return cert;
    }
    if (absl::Status key = CheckPem(flag_prefix + "-key", files.key_file, "PRIVATE KEY-----");
        !key.ok()) {
      return key;
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> MakeServerTlsCredentials(const TlsFiles& files) {
  grpc::experimental::TlsServerCredentialsOptions options(Provider(files));
  options.watch_identity_key_cert_pairs();
  if (!files.ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeClientTlsCredentials(const TlsFiles& files) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(files));
  if (!files.ca_file.empty()) options.watch_root_certs();
  if (!files.cert_file.empty()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

void SetTlsServerName(const std::string& server_name, grpc::ChannelArguments* args) {
  if (!server_name.empty()) args->SetSslTargetNameOverride(server_name);
}

}  // namespace joule
