#include "agent/kubelet/pod_resources.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/grpc_status.h"

namespace joule {
namespace {

// Big enough for a node with hundreds of pods: each pod costs a few hundred
// bytes. gRPC's default limit is 4 MiB.
constexpr int kMaxResponseBytes = 16 << 20;
// A restarted kubelet is found again within one poll or two.
constexpr int kMaxReconnectBackoffMs = 5000;
// How many unknown ids and shared GPUs Problems() names.
constexpr size_t kProblemsNamed = 3;

constexpr absl::string_view kGpuResource = "nvidia.com/gpu";
constexpr absl::string_view kMigResourcePrefix = "nvidia.com/mig-";

std::string Describe(const v1::KubernetesContainer& holder) {
  return absl::StrCat(holder.namespace_(), "/", holder.pod(), "/", holder.container());
}

auto Key(const v1::KubernetesContainer& holder) {
  return std::make_tuple(holder.namespace_(), holder.pod(), holder.container());
}

// The GPU index `id` names among `gpus` (kind GPU only), or -1.
int32_t ResolveDeviceId(absl::string_view id, const std::vector<v1::Device>& gpus) {
  // Time-slicing replicas are "<uuid>::<n>".
  if (size_t replica = id.find("::"); replica != absl::string_view::npos) {
    id = id.substr(0, replica);
  }
  absl::string_view uuid = id;
  // Old-style MIG ids name their parent: "MIG-GPU-<uuid>/<gi>/<ci>".
  if (absl::StartsWithIgnoreCase(id, "MIG-GPU-")) {
    uuid = id.substr(4);
    uuid = uuid.substr(0, uuid.find('/'));
  }
  for (const v1::Device& gpu : gpus) {
    if (!gpu.uuid().empty() && absl::EqualsIgnoreCase(gpu.uuid(), uuid)) {
      return gpu.index();
    }
  }
  int32_t index = 0;
  if (!id.empty() && std::all_of(id.begin(), id.end(), absl::ascii_isdigit) &&
      absl::SimpleAtoi(id, &index)) {
    for (const v1::Device& gpu : gpus) {
      if (gpu.index() == index) return index;
    }
  }
  return -1;
}

std::string FirstFew(const std::vector<std::string>& items) {
  std::vector<std::string> named(items.begin(),
                                 items.begin() + std::min(items.size(), kProblemsNamed));
  std::string out = absl::StrJoin(named, ", ");
  if (items.size() > named.size()) {
    absl::StrAppend(&out, " and ", items.size() - named.size(), " more");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PodResourcesClient>> PodResourcesClient::Create(
    std::string socket_path, absl::Duration timeout) {
  if (socket_path.empty() || socket_path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "the kubelet's pod-resources socket must be an absolute path, not \"",
        socket_path, "\""));
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the pod-resources timeout must be positive");
  }
  return std::unique_ptr<PodResourcesClient>(
      new PodResourcesClient(std::move(socket_path), timeout));
}

PodResourcesClient::PodResourcesClient(std::string socket_path, absl::Duration timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxResponseBytes);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  stub_ = ::v1::PodResourcesLister::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("unix://", socket_path_), grpc::InsecureChannelCredentials(), args));
}

absl::StatusOr<::v1::ListPodResourcesResponse> PodResourcesClient::List() const {
  grpc::ClientContext context;
  // gRPC's deadlines are wall-clock times: the real clock, whatever clock
  // the agent runs on.
  context.set_deadline(absl::ToChronoTime(RealClock::Get()->Now() + timeout_));
  ::v1::ListPodResourcesResponse response;
  const grpc::Status status =
      stub_->List(&context, ::v1::ListPodResourcesRequest(), &response);
  if (!status.ok()) {
    const absl::Status error = FromGrpcStatus(status);
    return absl::Status(error.code(),
                        absl::StrCat("kubelet PodResources List on unix://", socket_path_,
                                     ": ", error.message()));
  }
  return response;
}

bool IsNvidiaGpuResource(absl::string_view resource_name) {
  return resource_name == kGpuResource ||
         (absl::StartsWith(resource_name, kMigResourcePrefix) &&
          resource_name.size() > kMigResourcePrefix.size());
}

absl::Status GpuHolders::Problems() const {
  std::vector<std::string> parts;
  if (!unknown_ids.empty()) {
    parts.push_back(absl::StrCat(unknown_ids.size(), " GPU device id",
                                 unknown_ids.size() == 1 ? "" : "s",
                                 " from the kubelet match no GPU of this node: ",
                                 FirstFew(unknown_ids)));
  }
  if (!shared.empty()) {
    parts.push_back(absl::StrCat(shared.size(), " GPU", shared.size() == 1 ? " is" : "s are",
                                 " held by more than one container (energy goes to the "
                                 "first): ",
                                 FirstFew(shared)));
  }
  if (parts.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(parts, "; "));
}

GpuHolders MapGpuHolders(const ::v1::ListPodResourcesResponse& response,
                         const std::vector<v1::Device>& devices) {
  std::vector<v1::Device> gpus;
  for (const v1::Device& device : devices) {
    if (device.kind() == v1::DEVICE_KIND_GPU) gpus.push_back(device);
  }
  // Every holder of every GPU, each once, in (namespace, pod, container)
  // order.
  std::map<int32_t, std::map<std::tuple<std::string, std::string, std::string>,
                             v1::KubernetesContainer>>
      holders;
  GpuHolders out;
  for (const ::v1::PodResources& pod : response.pod_resources()) {
    for (const ::v1::ContainerResources& container : pod.containers()) {
      v1::KubernetesContainer holder;
      holder.set_namespace_(pod.namespace_());
      holder.set_pod(pod.name());
      holder.set_container(container.name());
      for (const ::v1::ContainerDevices& devices_of : container.devices()) {
        if (!IsNvidiaGpuResource(devices_of.resource_name())) continue;
        for (const std::string& id : devices_of.device_ids()) {
          const int32_t index = ResolveDeviceId(id, gpus);
          if (index < 0) {
            out.unknown_ids.push_back(absl::StrCat(devices_of.resource_name(), " ", id, " (",
                                                   Describe(holder), ")"));
            continue;
          }
          holders[index].emplace(Key(holder), holder);
        }
      }
    }
  }
  for (auto& [index, by_key] : holders) {
    out.by_gpu[index] = by_key.begin()->second;
    if (by_key.size() < 2) continue;
    std::vector<std::string> names;
    for (const auto& [key, holder] : by_key) names.push_back(Describe(holder));
    out.shared.push_back(
        absl::StrCat("GPU ", index, " (", absl::StrJoin(names, ", "), ")"));
  }
  return out;
}

}  // namespace joule
