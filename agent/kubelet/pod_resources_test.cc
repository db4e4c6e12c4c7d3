#include "agent/kubelet/pod_resources.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/kubelet/testing/fake_kubelet.h"
#include "agent/kubelet/testing/pod_resources_builder.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/node.pb.h"
#include "podresources/v1/api.pb.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

constexpr char kUuid0[] = "GPU-8a1f5e2c-0b7d-4c1e-9f3a-111111111111";
constexpr char kUuid1[] = "GPU-8a1f5e2c-0b7d-4c1e-9f3a-222222222222";
constexpr char kUuid2[] = "GPU-8a1f5e2c-0b7d-4c1e-9f3a-333333333333";

// A node with three GPUs (indices 0-2, the UUIDs above) and a CPU package,
// as the agent describes them.
std::vector<v1::Device> NodeDevices() {
  std::vector<v1::Device> devices;
  const char* uuids[] = {kUuid0, kUuid1, kUuid2};
  for (int32_t i = 0; i < 3; ++i) {
    v1::Device& gpu = devices.emplace_back();
    gpu.set_kind(v1::DEVICE_KIND_GPU);
    gpu.set_index(i);
    gpu.set_uuid(uuids[i]);
  }
  v1::Device& cpu = devices.emplace_back();
  cpu.set_kind(v1::DEVICE_KIND_CPU);
  cpu.set_index(0);
  return devices;
}

// "namespace/pod/container" of a holder, for matching.
std::string Holder(const v1::KubernetesContainer& holder) {
  return absl::StrCat(holder.namespace_(), "/", holder.pod(), "/", holder.container());
}

std::vector<std::pair<int32_t, std::string>> Held(const GpuHolders& holders) {
  std::vector<std::pair<int32_t, std::string>> out;
  for (const auto& [index, holder] : holders.by_gpu) out.emplace_back(index, Holder(holder));
  return out;
}

// ---- The client, through a fake kubelet on a unix socket ----

TEST(PodResourcesClientTest, ListsThroughTheKubeletSocket) {
  absl::StatusOr<std::unique_ptr<FakeKubelet>> kubelet = FakeKubelet::Start();
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  (*kubelet)->SetResponse(PodResourcesBuilder()
                              .Pod("team-a", "train-0")
                              .Container("main")
                              .Devices("nvidia.com/gpu", {kUuid1})
                              .Cpus({2, 3})
                              .Build());
  absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
      PodResourcesClient::Create((*kubelet)->socket_path());
  ASSERT_TRUE(client.ok()) << client.status();

  absl::StatusOr<::v1::ListPodResourcesResponse> response = (*client)->List();
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_THAT(response->pod_resources(), SizeIs(1));
  const ::v1::PodResources& pod = response->pod_resources(0);
  EXPECT_EQ(pod.namespace_(), "team-a");
  EXPECT_EQ(pod.name(), "train-0");
  ASSERT_THAT(pod.containers(), SizeIs(1));
  EXPECT_EQ(pod.containers(0).name(), "main");
  EXPECT_THAT(pod.containers(0).cpu_ids(), ElementsAre(2, 3));
  ASSERT_THAT(pod.containers(0).devices(), SizeIs(1));
  EXPECT_EQ(pod.containers(0).devices(0).resource_name(), "nvidia.com/gpu");
  EXPECT_THAT(pod.containers(0).devices(0).device_ids(), ElementsAre(kUuid1));
  EXPECT_EQ((*kubelet)->calls(), 1);

  EXPECT_THAT(Held(MapGpuHolders(*response, NodeDevices())),
              ElementsAre(Pair(1, "team-a/train-0/main")));
}

TEST(PodResourcesClientTest, UnreachableSocketIsUnavailableNamingIt) {
  const std::string missing = "/nonexistent-joule-test/pod-resources/kubelet.sock";
  absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
      PodResourcesClient::Create(missing, absl::Seconds(2));
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<::v1::ListPodResourcesResponse> response = (*client)->List();
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable) << response.status();
  EXPECT_THAT(response.status().message(), HasSubstr(absl::StrCat("unix://", missing)));
}

TEST(PodResourcesClientTest, KubeletErrorsKeepTheirCode) {
  absl::StatusOr<std::unique_ptr<FakeKubelet>> kubelet = FakeKubelet::Start();
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  (*kubelet)->SetError(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "rate limit exceeded"));
  absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
      PodResourcesClient::Create((*kubelet)->socket_path());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<::v1::ListPodResourcesResponse> response = (*client)->List();
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response.status().message(), HasSubstr("rate limit exceeded"));
  EXPECT_THAT(response.status().message(), HasSubstr((*kubelet)->socket_path()));
}

TEST(PodResourcesClientTest, RelativeOrEmptySocketPathIsRefused) {
  for (const std::string path : {"", "kubelet.sock", "unix:///var/lib/kubelet.sock"}) {
    absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
        PodResourcesClient::Create(path);
    EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
}

// ---- The mapping ----

TEST(IsNvidiaGpuResourceTest, GpusAndMigInstancesOnly) {
  EXPECT_TRUE(IsNvidiaGpuResource("nvidia.com/gpu"));
  EXPECT_TRUE(IsNvidiaGpuResource("nvidia.com/mig-1g.5gb"));
  EXPECT_TRUE(IsNvidiaGpuResource("nvidia.com/mig-3g.40gb"));
  EXPECT_FALSE(IsNvidiaGpuResource("nvidia.com/mig-"));
  EXPECT_FALSE(IsNvidiaGpuResource("nvidia.com/gpu.shared"));
  EXPECT_FALSE(IsNvidiaGpuResource("amd.com/gpu"));
  EXPECT_FALSE(IsNvidiaGpuResource("example.com/nvidia.com/gpu"));
  EXPECT_FALSE(IsNvidiaGpuResource(""));
}

struct MappingCase {
  std::string name;
  ::v1::ListPodResourcesResponse response;
  std::vector<std::pair<int32_t, std::string>> held;
  int unknown = 0;
  int shared = 0;
};

class MapGpuHoldersTest : public ::testing::TestWithParam<MappingCase> {};

TEST_P(MapGpuHoldersTest, MapsDeviceIdsToGpuIndices) {
  const MappingCase& c = GetParam();
  const GpuHolders holders = MapGpuHolders(c.response, NodeDevices());
  EXPECT_EQ(Held(holders), c.held);
  EXPECT_THAT(holders.unknown_ids, SizeIs(c.unknown));
  EXPECT_THAT(holders.shared, SizeIs(c.shared));
  EXPECT_EQ(holders.Problems().ok(), c.unknown == 0 && c.shared == 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MapGpuHoldersTest,
    ::testing::Values(
        MappingCase{"Empty", PodResourcesBuilder().Build(), {}},
        MappingCase{"Uuids",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {kUuid2, kUuid0})
                        .Build(),
                    {{0, "a/p/c"}, {2, "a/p/c"}}},
        MappingCase{"UuidsIgnoreCase",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {"gpu-8A1F5E2C-0B7D-4C1E-9F3A-222222222222"})
                        .Build(),
                    {{1, "a/p/c"}}},
        MappingCase{"Indices",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {"2"})
                        .Pod("b", "q")
                        .Container("d")
                        .Devices("nvidia.com/gpu", {"0"})
                        .Build(),
                    {{0, "b/q/d"}, {2, "a/p/c"}}},
        MappingCase{"IndexOutOfRangeIsUnknown",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {"3", "-1", "1x", "99999999999"})
                        .Build(),
                    {},
                    4},
        MappingCase{"UnknownUuidIsCountedOthersStillMapped",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {"GPU-not-on-this-node", kUuid1})
                        .Build(),
                    {{1, "a/p/c"}},
                    1},
        MappingCase{"OldStyleMigIdNamesItsParent",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/mig-1g.5gb",
                                 {absl::StrCat("MIG-", kUuid2, "/7/0")})
                        .Build(),
                    {{2, "a/p/c"}}},
        MappingCase{"MigUuidWithoutParentIsUnknown",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/mig-3g.20gb",
                                 {"MIG-5c89852c-d268-5b5a-9d8c-9ec5dd1e0ff4"})
                        .Build(),
                    {},
                    1},
        MappingCase{"TimeSlicedReplicaSuffix",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {absl::StrCat(kUuid0, "::3")})
                        .Build(),
                    {{0, "a/p/c"}}},
        MappingCase{"NonGpuResourcesAreIgnored",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("example.com/fpga", {kUuid0, "0", "fpga-9"})
                        .Devices("amd.com/gpu", {"1"})
                        .Cpus({4, 5})
                        .Build(),
                    {}},
        MappingCase{"TwoHoldersOfOneGpuFirstWinsAndIsReported",
                    PodResourcesBuilder()
                        .Pod("z", "late")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {absl::StrCat(kUuid1, "::1")})
                        .Pod("a", "early")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {absl::StrCat(kUuid1, "::0")})
                        .Build(),
                    {{1, "a/early/c"}},
                    0,
                    1},
        MappingCase{"SameIdTwiceInOneContainerIsOneHolder",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c")
                        .Devices("nvidia.com/gpu", {kUuid0, "0"})
                        .Build(),
                    {{0, "a/p/c"}}},
        MappingCase{"EveryContainerOfAPod",
                    PodResourcesBuilder()
                        .Pod("a", "p")
                        .Container("c1")
                        .Devices("nvidia.com/gpu", {kUuid0})
                        .Container("c2")
                        .Devices("nvidia.com/gpu", {kUuid1})
                        .Container("sidecar")
                        .Build(),
                    {{0, "a/p/c1"}, {1, "a/p/c2"}}}),
    [](const ::testing::TestParamInfo<MappingCase>& info) { return info.param.name; });

TEST(MapGpuHoldersProblemsTest, ProblemsNameTheIdsAndTheSharedGpus) {
  const GpuHolders holders = MapGpuHolders(
      PodResourcesBuilder()
          .Pod("team-a", "infer-1")
          .Container("server")
          .Devices("nvidia.com/gpu", {"GPU-gone", "7"})
          .Pod("team-b", "train-2")
          .Container("main")
          .Devices("nvidia.com/gpu", {kUuid0})
          .Pod("team-c", "notebook")
          .Container("jupyter")
          .Devices("nvidia.com/gpu", {"0"})
          .Build(),
      NodeDevices());
  EXPECT_THAT(holders.unknown_ids,
              ElementsAre("nvidia.com/gpu GPU-gone (team-a/infer-1/server)",
                          "nvidia.com/gpu 7 (team-a/infer-1/server)"));
  EXPECT_THAT(holders.shared,
              ElementsAre("GPU 0 (team-b/train-2/main, team-c/notebook/jupyter)"));
  const absl::Status problems = holders.Problems();
  EXPECT_EQ(problems.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(problems.message(), HasSubstr("2 GPU device ids from the kubelet match no GPU"));
  EXPECT_THAT(problems.message(), HasSubstr("GPU-gone"));
  EXPECT_THAT(problems.message(), HasSubstr("1 GPU is held by more than one container"));
}

TEST(MapGpuHoldersProblemsTest, ProblemsNameAFewAndCountTheRest) {
  PodResourcesBuilder builder;
  builder.Pod("a", "p").Container("c");
  for (int i = 0; i < 10; ++i) builder.Devices("nvidia.com/gpu", {absl::StrCat("GPU-x", i)});
  const GpuHolders holders = MapGpuHolders(builder.Build(), NodeDevices());
  EXPECT_THAT(holders.by_gpu, IsEmpty());
  EXPECT_THAT(holders.Problems().message(), HasSubstr("and 7 more"));
}

TEST(MapGpuHoldersProblemsTest, NoGpusOnTheNodeMakesEveryIdUnknown) {
  const GpuHolders holders = MapGpuHolders(PodResourcesBuilder()
                                               .Pod("a", "p")
                                               .Container("c")
                                               .Devices("nvidia.com/gpu", {kUuid0, "0"})
                                               .Build(),
                                           {});
  EXPECT_THAT(holders.by_gpu, IsEmpty());
  EXPECT_THAT(holders.unknown_ids, SizeIs(2));
}

}  // namespace
}  // namespace joule
