#include "tests/e2e/test_pki.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace joule {

absl::Status RunCommand(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  return absl::InternalError(absl::StrCat(argv[0], " ", argv.size() > 1 ? argv[1] : "",
                                          " failed (status ", status, "): ", text.str()));
}

absl::StatusOr<TestPki> TestPki::Create(const std::string& dir, const std::string& name) {
  mkdir(dir.c_str(), 0700);
  const std::string cert = dir + "/ca.pem";
  const std::string key = dir + "/ca.key";
  absl::Status made = RunCommand(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", absl::StrCat("/CN=", name),
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
       "keyUsage=critical,keyCertSign,cRLSign"},
      dir + "/openssl.log");
  if (!made.ok()) return made;
  return TestPki(dir, cert, key);
}

absl::StatusOr<CertFiles> TestPki::Issue(const std::string& file_name, const std::string& san) {
  CertFiles files;
  files.cert = absl::StrCat(dir_, "/", file_name, ".pem");
  files.key = absl::StrCat(dir_, "/", file_name, ".key");
  const std::string csr = absl::StrCat(dir_, "/", file_name, ".csr");
  const std::string ext = absl::StrCat(dir_, "/", file_name, ".ext");
  std::ofstream(ext) << "subjectAltName=" << san << "\n"
                     << "basicConstraints=critical,CA:FALSE\n"
                     << "keyUsage=critical,digitalSignature,keyEncipherment\n"
                     << "extendedKeyUsage=serverAuth,clientAuth\n";
  const std::string log = dir_ + "/openssl.log";
  absl::Status made = RunCommand(
      {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", files.key, "-out", csr, "-subj", absl::StrCat("/CN=", file_name)},
      log);
  if (!made.ok()) return made;
  made = RunCommand({"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert_, "-CAkey", ca_key_,
                     "-set_serial", absl::StrCat(++serial_), "-days", "2", "-out", files.cert,
                     "-extfile", ext},
                    log);
  if (!made.ok()) return made;
  return files;
}

absl::StatusOr<CertFiles> TestPki::Scheduler() {
  return Issue("scheduler", "DNS:localhost,IP:127.0.0.1");
}

absl::StatusOr<CertFiles> TestPki::Node(const std::string& name) {
  return Issue(absl::StrCat("node-", name), absl::StrCat("URI:spiffe://joule/node/", name));
}

absl::StatusOr<CertFiles> TestPki::User(const std::string& name) {
  return Issue(absl::StrCat("user-", name), absl::StrCat("URI:spiffe://joule/user/", name));
}

}  // namespace joule
