#ifndef JOULE_AGENT_KUBELET_TESTING_FAKE_KUBELET_H_
#define JOULE_AGENT_KUBELET_TESTING_FAKE_KUBELET_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "podresources/v1/api.grpc.pb.h"
#include "podresources/v1/api.pb.h"

namespace joule {

// A kubelet's PodResources v1 service for tests: a real gRPC server (the
// generated ::v1::PodResourcesLister::Service) on a unix socket in a fresh
// temporary directory, answering List with what the test set.
//
// Thread-safe; state guarded by mu_ (gRPC calls List on its own threads).
class FakeKubelet : public ::v1::PodResourcesLister::Service {
 public:
  // Starts serving an empty response.
  static absl::StatusOr<std::unique_ptr<FakeKubelet>> Start();
  // Stops the server and removes the socket and its directory.
  ~FakeKubelet() override;

  // An absolute path, short enough for a unix socket address.
  const std::string& socket_path() const { return socket_path_; }

  // What List answers from now on.
  void SetResponse(::v1::ListPodResourcesResponse response);
  // List fails with `error` from now on (until SetResponse).
  void SetError(grpc::Status error);
  int calls() const;

  grpc::Status List(grpc::ServerContext* context,
                    const ::v1::ListPodResourcesRequest* request,
                    ::v1::ListPodResourcesResponse* response) override;

 private:
  FakeKubelet(std::string dir, std::string socket_path);

  const std::string dir_;
  const std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;

  mutable absl::Mutex mu_;
  ::v1::ListPodResourcesResponse response_ ABSL_GUARDED_BY(mu_);
  grpc::Status error_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_TESTING_FAKE_KUBELET_H_
