#ifndef JOULE_AGENT_KUBELET_POD_RESOURCES_H_
#define JOULE_AGENT_KUBELET_POD_RESOURCES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/node.pb.h"
#include "podresources/v1/api.grpc.pb.h"
#include "podresources/v1/api.pb.h"

namespace joule {

// Where the kubelet serves its PodResources API unless told otherwise.
inline constexpr char kDefaultPodResourcesSocket[] =
    "/var/lib/kubelet/pod-resources/kubelet.sock";

// A client of the kubelet's PodResources v1 API (the kubelet's own proto,
// package `v1`: C++ `::v1`, not `joule::v1`) on the kubelet's unix socket.
//
// Plaintext: the socket is local, and who may open it is decided by its
// file permissions (root-only on a standard kubelet). Every call has a
// deadline, so a hung kubelet costs at most `timeout` per call.
//
// Thread-safe (the gRPC stub is); holds no state of its own beyond the
// channel.
class PodResourcesClient {
 public:
  // `socket_path`: an absolute path (INVALID_ARGUMENT otherwise). Nothing is
  // dialled yet: a kubelet that is not there shows in List.
  static absl::StatusOr<std::unique_ptr<PodResourcesClient>> Create(
      std::string socket_path, absl::Duration timeout = absl::Seconds(2));

  // Every pod the kubelet runs with what its containers hold. Errors keep
  // gRPC's code (UNAVAILABLE: no kubelet on the socket; DEADLINE_EXCEEDED;
  // UNIMPLEMENTED: a kubelet without the v1 API) and name the socket.
  absl::StatusOr<::v1::ListPodResourcesResponse> List() const;

  const std::string& socket_path() const { return socket_path_; }

 private:
  PodResourcesClient(std::string socket_path, absl::Duration timeout);

  const std::string socket_path_;
  const absl::Duration timeout_;
  std::unique_ptr<::v1::PodResourcesLister::Stub> stub_;
};

// Whether `resource_name` is an NVIDIA GPU resource: "nvidia.com/gpu"
// (whole GPUs, or time-sliced replicas of them) or "nvidia.com/mig-<profile>"
// (MIG instances, the device plugin's "mixed" strategy). Every other
// resource is ignored.
bool IsNvidiaGpuResource(absl::string_view resource_name);

// Which of this node's GPUs Kubernetes containers hold, from one List
// response.
struct GpuHolders {
  // By GPU index (Device.index).
  std::map<int32_t, v1::KubernetesContainer> by_gpu;
  // GPU-resource device ids that match no GPU of this node, each as
  // "RESOURCE ID (NAMESPACE/POD/CONTAINER)". Their GPUs are not marked.
  std::vector<std::string> unknown_ids;
  // GPUs held by more than one container (time slicing, several MIG
  // instances of one GPU): the GPU goes to the first holder in (namespace,
  // pod, container) order, and this says who else holds it.
  std::vector<std::string> shared;

  // OK, or FAILED_PRECONDITION saying how many ids matched no GPU and which
  // GPUs are shared (a few of each by name).
  absl::Status Problems() const;
};

// Maps the GPU devices of `response` to this node's GPUs (`devices`: the
// agent's device list; only DEVICE_KIND_GPU entries count). A device id is,
// in order:
//  1. a GPU UUID ("GPU-..."), matched against Device.uuid, case-insensitively,
//     with a time-slicing replica suffix "::N" dropped first;
//  2. an old-style MIG id "MIG-GPU-<uuid>/<gi>/<ci>" (drivers before 470),
//     which names its parent GPU;
//  3. a plain decimal index ("0", "3"), matched against Device.index.
// Anything else (including today's MIG UUIDs "MIG-<uuid>", which do not name
// their parent: the agent lists whole GPUs only) is an unknown id: counted in
// GpuHolders::unknown_ids, never dropped silently and never a crash.
// Non-GPU resources are ignored.
GpuHolders MapGpuHolders(const ::v1::ListPodResourcesResponse& response,
                         const std::vector<v1::Device>& devices);

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_POD_RESOURCES_H_
