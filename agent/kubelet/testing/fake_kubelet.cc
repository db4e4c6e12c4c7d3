#include "agent/kubelet/testing/fake_kubelet.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace joule {
namespace {

// sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
constexpr size_t kMaxSocketPath = 100;

// A fresh directory for the socket: under the test's temporary directory
// where that path is short enough, else under /tmp.
absl::StatusOr<std::string> MakeSocketDir() {
  const char* test_tmp = getenv("TEST_TMPDIR");
  std::string base = test_tmp != nullptr ? test_tmp : "/tmp";
  if (base.size() + sizeof("/kubelet-XXXXXX/kubelet.sock") > kMaxSocketPath) base = "/tmp";
  std::string dir = absl::StrCat(base, "/kubelet-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", dir, ": ", std::strerror(errno)));
  }
  return dir;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeKubelet>> FakeKubelet::Start() {
  absl::StatusOr<std::string> dir = MakeSocketDir();
  if (!dir.ok()) return dir.status();
  std::unique_ptr<FakeKubelet> kubelet(
      new FakeKubelet(*dir, absl::StrCat(*dir, "/kubelet.sock")));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix://", kubelet->socket_path_),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(kubelet.get());
  kubelet->server_ = builder.BuildAndStart();
  if (kubelet->server_ == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot serve on unix://", kubelet->socket_path_));
  }
  return kubelet;
}

FakeKubelet::FakeKubelet(std::string dir, std::string socket_path)
    : dir_(std::move(dir)), socket_path_(std::move(socket_path)) {}

FakeKubelet::~FakeKubelet() {
  if (server_ != nullptr) server_->Shutdown();
  unlink(socket_path_.c_str());
  rmdir(dir_.c_str());
}

void FakeKubelet::SetResponse(::v1::ListPodResourcesResponse response) {
  absl::MutexLock lock(&mu_);
  response_ = std::move(response);
  error_ = grpc::Status::OK;
}

void FakeKubelet::SetError(grpc::Status error) {
  absl::MutexLock lock(&mu_);
  error_ = std::move(error);
}

int FakeKubelet::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

grpc::Status FakeKubelet::List(grpc::ServerContext*, const ::v1::ListPodResourcesRequest*,
                               ::v1::ListPodResourcesResponse* response) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  if (!error_.ok()) return error_;
  *response = response_;
  return grpc::Status::OK;
}

}  // namespace joule
