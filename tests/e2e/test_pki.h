#ifndef JOULE_TESTS_E2E_TEST_PKI_H_
#define JOULE_TESTS_E2E_TEST_PKI_H_

#include <string>

#include "absl/status/statusor.h"

namespace joule {

// A certificate and its key, as PEM files.
struct CertFiles {
  std::string cert;
  std::string key;
};

// A throwaway certificate authority for one test, made with Debian's openssl
// command: EC P-256 keys, certificates valid for two days. Agents get
// spiffe://joule/node/NAME, users spiffe://joule/user/NAME, the scheduler
// DNS:localhost and IP:127.0.0.1.
//
// Not thread-safe; files live under the directory given to Create.
class TestPki {
 public:
  // Makes the CA in `dir` (created if needed). `name` goes into the CA's
  // subject, so that two TestPkis are told apart.
  static absl::StatusOr<TestPki> Create(const std::string& dir,
                                        const std::string& name = "Joule Test CA");

  const std::string& ca() const { return ca_cert_; }
  // The scheduler's serving certificate (made once).
  absl::StatusOr<CertFiles> Scheduler();
  absl::StatusOr<CertFiles> Node(const std::string& name);
  absl::StatusOr<CertFiles> User(const std::string& name);
  // A certificate with the given subjectAltName value, e.g.
  // "URI:spiffe://other/node/a".
  absl::StatusOr<CertFiles> Issue(const std::string& file_name, const std::string& san);

 private:
  TestPki(std::string dir, std::string ca_cert, std::string ca_key)
      : dir_(std::move(dir)), ca_cert_(std::move(ca_cert)), ca_key_(std::move(ca_key)) {}

  std::string dir_;
  std::string ca_cert_;
  std::string ca_key_;
  int serial_ = 1;
};

// Runs a command (argv[0] looked up in PATH), waits for it; its output goes
// to `log`. INTERNAL with the exit status and the log when it fails.
absl::Status RunCommand(const std::vector<std::string>& argv, const std::string& log);

}  // namespace joule

#endif  // JOULE_TESTS_E2E_TEST_PKI_H_
