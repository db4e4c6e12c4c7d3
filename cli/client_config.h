#ifndef JOULE_CLI_CLIENT_CONFIG_H_
#define JOULE_CLI_CLIENT_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"

namespace joule {

// Where joulectl finds the scheduler and how it proves who it is: like a
// kubeconfig, a YAML file holds the addresses, the CA, and the token or
// client certificate, so that flags are not needed day to day:
//
//   scheduler: sched-0.example:7070,sched-1.example:7070
//   ca: ca.pem                 # verifies the scheduler's certificate
//   token-file: token          # bearer token (or `token: ...` inline)
//   cert: alice.pem            # or a client certificate and key
//   key: alice-key.pem
//   server-name: joule-scheduler   # the name in the scheduler's certificate
//   insecure: false            # plaintext (a loopback scheduler only)
//
// Relative paths are relative to the file's directory. The file is
// $JOULE_CONFIG, or ~/.config/joule/config.yaml when that exists. Flags win
// over the environment (JOULE_SCHEDULER, JOULE_TOKEN), which wins over the
// file.
struct ClientConfig {
  std::string scheduler;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string token;
  std::string token_file;
  std::string server_name;
  bool insecure = false;

  // Fields of `other` that are set replace these.
  void MergeFrom(const ClientConfig& other);
};

// Reads a config file. `must_exist`: a missing file is NOT_FOUND (else it
// gives an empty config). Unknown keys and wrong types are INVALID_ARGUMENT
// naming the file and key.
absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path, bool must_exist);

// The default file: $JOULE_CONFIG, else $HOME/.config/joule/config.yaml.
std::string DefaultClientConfigPath();

// The token to send: `token`, else the first line of `token_file`
// (whitespace trimmed), else "". An unreadable or empty file is an error
// naming it.
absl::StatusOr<std::string> ResolveToken(const ClientConfig& config);

}  // namespace joule

#endif  // JOULE_CLI_CLIENT_CONFIG_H_
