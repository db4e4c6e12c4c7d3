#include "scheduler/node_registry.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/device_catalog.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"
#include "scheduler/placement/cluster.h"
#include "scheduler/testing/fake_agent_link.h"

namespace joule {
namespace {

using scheduler_testing::FakeAgentLink;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr int64_t kGiB = int64_t{1} << 30;
constexpr absl::Duration kFreshness = absl::Seconds(10);

MATCHER_P(EqualsProto, expected, "equals the expected message") {
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(arg, expected)) return true;
  *result_listener << diff;
  return false;
}

// A catalog whose V100 throttles at 80 C (the built-in one says 83 C): a
// registry that reads throttle temperatures elsewhere than from the catalog
// it was given shows.
std::vector<GpuModelSpec> TestCatalog() {
  return {{"V100", 16 * kGiB, 100, 250, 250, 35, 135, 1380, 877, 80}};
}
constexpr double kTestV100ThrottleC = 80;
// GpuView's throttle temperature for a model no catalog knows.
const double kUnknownModelThrottleC = GpuView().throttle_temp_c;

// NodeInfoBuilder("gpu-a").Cpu(0).Gpus(2, "V100").Build(): 8 CPUs, 16 GiB,
// 60 W static; GPUs are numbered in the order they are added.
class NodeInfoBuilder {
 public:
  explicit NodeInfoBuilder(std::string name) {
    info_.set_name(std::move(name));
    info_.set_cpus(8);
    info_.set_memory_bytes(16 * kGiB);
    info_.set_static_power_w(60);
    info_.set_agent_version("joule-agent test");
  }
  NodeInfoBuilder& Gpus(int count, const std::string& model) {
    for (int i = 0; i < count; ++i) {
      v1::Device* device = info_.add_devices();
      device->set_kind(v1::DEVICE_KIND_GPU);
      device->set_index(next_gpu_++);
      device->set_model(model);
      device->set_uuid(absl::StrCat("GPU-", info_.name(), "-", device->index()));
      device->set_memory_bytes(16 * kGiB);
      device->set_power_limit_min_w(100);
      device->set_power_limit_default_w(250);
      device->set_power_limit_max_w(250);
      device->set_idle_power_w(35);
    }
    return *this;
  }
  // A CPU package: a device that is never one of the node's GPUs.
  NodeInfoBuilder& Cpu(int32_t index, const std::string& model = "CPU") {
    v1::Device* device = info_.add_devices();
    device->set_kind(v1::DEVICE_KIND_CPU);
    device->set_index(index);
    device->set_model(model);
    device->set_power_limit_max_w(150);
    return *this;
  }
  NodeInfoBuilder& Cpus(double cpus) {
    info_.set_cpus(cpus);
    return *this;
  }
  NodeInfoBuilder& StaticPower(double watts) {
    info_.set_static_power_w(watts);
    return *this;
  }
  NodeInfoBuilder& Source(const std::string& name, v1::SourceStatus::State state) {
    v1::SourceStatus* source = info_.add_sources();
    source->set_name(name);
    source->set_state(state);
    return *this;
  }
  v1::NodeInfo Build() const { return info_; }

 private:
  v1::NodeInfo info_;
  int32_t next_gpu_ = 0;
};

v1::DeviceSample* AddReading(v1::NodeSample& sample, v1::DeviceKind kind, int32_t index,
                             double temp_c) {
  v1::DeviceSample* device = sample.add_devices();
  device->set_kind(kind);
  device->set_index(index);
  device->set_temp_c(temp_c);
  device->set_power_w(100);
  return device;
}

v1::DeviceSample* AddGpuReading(v1::NodeSample& sample, int32_t index, double temp_c = 40) {
  return AddReading(sample, v1::DEVICE_KIND_GPU, index, temp_c);
}

void HoldBy(v1::DeviceSample* device, const std::string& ns, const std::string& pod) {
  device->mutable_held_by()->set_namespace_(ns);
  device->mutable_held_by()->set_pod(pod);
  device->mutable_held_by()->set_container("main");
}

// Readings of GPUs 0 and 1, held by the pods `held` names (index ->
// {namespace, pod}).
v1::NodeSample SampleHolding(const std::map<int32_t, std::pair<std::string, std::string>>& held) {
  v1::NodeSample sample;
  for (int32_t index : {0, 1}) {
    v1::DeviceSample* device = AddGpuReading(sample, index);
    auto it = held.find(index);
    if (it != held.end()) HoldBy(device, it->second.first, it->second.second);
  }
  return sample;
}

class NodeRegistryTest : public ::testing::Test {
 protected:
  // Registers `info` on `link`, expecting no stream to be replaced.
  NodeRecord& Register(FakeAgentLink& link, const v1::NodeInfo& info, absl::Time now = kT0) {
    // Not null, so that a Register that leaves it alone shows.
    AgentLink* replaced = &other_link_;
    NodeRecord& node = registry_.Register(&link, info, now, &replaced);
    EXPECT_EQ(replaced, nullptr);
    return node;
  }

  NodeRegistry registry_{&GpuCatalog()};
  FakeAgentLink link_;
  FakeAgentLink other_link_;
};

// ---- Register, Disconnect, Find, Remember ----

TEST_F(NodeRegistryTest, RegisterMakesAReadyConnectedNode) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build();
  NodeRecord& node = Register(link_, info, kT0);

  EXPECT_THAT(node.info, EqualsProto(info));
  EXPECT_EQ(node.link, &link_);
  EXPECT_TRUE(node.ready);
  EXPECT_TRUE(node.connected());
  EXPECT_EQ(node.message, "");
  EXPECT_EQ(node.last_seen, kT0);
  EXPECT_EQ(node.last_telemetry, kT0);
  EXPECT_THAT(node.task_ids, IsEmpty());
  EXPECT_EQ(registry_.FindByLink(&link_), &node);
  EXPECT_EQ(registry_.Find("gpu-a"), &node);
  EXPECT_EQ(registry_.size(), 1u);
}

TEST_F(NodeRegistryTest, ANewStreamOfTheSameNodeReplacesTheOldOne) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build();
  NodeRecord& first = Register(link_, info, kT0);

  AgentLink* replaced = nullptr;
  NodeRecord& second = registry_.Register(&other_link_, info, kT0 + absl::Seconds(5), &replaced);

  EXPECT_EQ(replaced, &link_);
  EXPECT_EQ(&second, &first);
  EXPECT_EQ(second.link, &other_link_);
  EXPECT_EQ(second.last_seen, kT0 + absl::Seconds(5));
  EXPECT_EQ(second.last_telemetry, kT0 + absl::Seconds(5));
  EXPECT_EQ(registry_.FindByLink(&link_), nullptr);
  EXPECT_EQ(registry_.FindByLink(&other_link_), &second);
  EXPECT_EQ(registry_.size(), 1u);
  // The old stream closing later does not take the node's new one.
  EXPECT_EQ(registry_.Disconnect(&link_), nullptr);
  EXPECT_EQ(second.link, &other_link_);
  EXPECT_TRUE(second.connected());
}

TEST_F(NodeRegistryTest, RegisteringAgainOnTheSameStreamReplacesNothing) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Build();
  Register(link_, info, kT0);
  NodeRecord& node = Register(link_, info, kT0 + absl::Seconds(1));
  EXPECT_EQ(registry_.FindByLink(&link_), &node);
  EXPECT_EQ(node.link, &link_);
}

TEST_F(NodeRegistryTest, RegisterMakesADownNodeReadyAndTakesTheNewInfo) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build());
  node.ready = false;
  node.message = "silent for 31s";

  const v1::NodeInfo changed = NodeInfoBuilder("gpu-a").Gpus(2, "A100").Cpus(32).Build();
  Register(link_, changed, kT0 + absl::Minutes(1));

  EXPECT_TRUE(node.ready);
  EXPECT_EQ(node.message, "");
  EXPECT_THAT(node.info, EqualsProto(changed));
}

TEST_F(NodeRegistryTest, RegisterKeepsTheTasksOfARememberedNode) {
  // The store mentioned the node's tasks before its agent came back.
  registry_.Remember("gpu-a");
  registry_.Allocate("gpu-a", "job-1.r0.a1", {1}, 2, 4 * kGiB);

  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build());

  EXPECT_THAT(node.task_ids, ElementsAre("job-1.r0.a1"));
  EXPECT_THAT(node.used_gpus, ElementsAre(1));
  EXPECT_EQ(node.used_cpus, 2);
  EXPECT_EQ(node.used_memory_bytes, 4 * kGiB);
  EXPECT_EQ(registry_.size(), 1u);
}

TEST_F(NodeRegistryTest, ThrottleTemperaturesComeFromTheGivenCatalog) {
  const std::vector<GpuModelSpec> catalog = TestCatalog();
  NodeRegistry registry(&catalog);
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a")
                                .Gpus(1, "V100")
                                .Gpus(1, "Tesla V100")  // The catalog's name rules.
                                .Gpus(1, "A100")        // Only in the built-in catalog.
                                .Gpus(1, "Mystery9000")
                                // Named like a GPU model, but not a GPU.
                                .Cpu(7, "V100")
                                .Build();
  AgentLink* replaced = nullptr;
  NodeRecord& node = registry.Register(&link_, info, kT0, &replaced);

  EXPECT_THAT(node.throttle_temp_c,
              UnorderedElementsAre(Pair(0, kTestV100ThrottleC), Pair(1, kTestV100ThrottleC)));
}

TEST_F(NodeRegistryTest, ThrottleTemperaturesOfTheBuiltInCatalog) {
  const absl::optional<GpuModelSpec> v100 = FindGpuModel(GpuCatalog(), "V100");
  const absl::optional<GpuModelSpec> h100 = FindGpuModel(GpuCatalog(), "H100");
  ASSERT_TRUE(v100.has_value());
  ASSERT_TRUE(h100.has_value());
  // Told apart, so that a registry that mixes them up shows.
  ASSERT_NE(v100->throttle_temp_c, h100->throttle_temp_c);

  NodeRecord& node =
      Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Gpus(1, "NVIDIA H100").Build());

  EXPECT_THAT(node.throttle_temp_c,
              UnorderedElementsAre(Pair(0, v100->throttle_temp_c), Pair(1, h100->throttle_temp_c)));
}

TEST_F(NodeRegistryTest, RegisteringAgainForgetsTheOldGpusThrottleTemperatures) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build());
  ASSERT_THAT(node.throttle_temp_c, SizeIs(2));

  Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "Mystery9000").Build());

  EXPECT_THAT(node.throttle_temp_c, IsEmpty());
}

TEST_F(NodeRegistryTest, DisconnectClearsTheLinkOnce) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Build());

  EXPECT_EQ(registry_.Disconnect(&link_), &node);
  EXPECT_EQ(node.link, nullptr);
  EXPECT_FALSE(node.connected());
  EXPECT_EQ(registry_.FindByLink(&link_), nullptr);
  EXPECT_EQ(registry_.Find("gpu-a"), &node);
  // Already closed, and a stream that never registered.
  EXPECT_EQ(registry_.Disconnect(&link_), nullptr);
  EXPECT_EQ(registry_.Disconnect(&other_link_), nullptr);
}

TEST_F(NodeRegistryTest, AStreamThatClosedCanRegisterAgain) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Build());
  registry_.Disconnect(&link_);

  EXPECT_EQ(&Register(other_link_, NodeInfoBuilder("gpu-a").Build()), &node);
  EXPECT_TRUE(node.connected());
  EXPECT_EQ(registry_.FindByLink(&other_link_), &node);
}

TEST_F(NodeRegistryTest, FindKnowsOnlyKnownNodes) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Build());
  const NodeRegistry& registry = registry_;

  EXPECT_EQ(registry_.Find("gpu-b"), nullptr);
  EXPECT_EQ(registry.Find("gpu-b"), nullptr);
  EXPECT_EQ(registry.Find("gpu-a"), &node);
  EXPECT_EQ(registry_.FindByLink(&other_link_), nullptr);
}

TEST_F(NodeRegistryTest, RememberMakesAnEmptyNodeOnce) {
  NodeRecord& node = registry_.Remember("gpu-b");

  EXPECT_EQ(node.info.name(), "gpu-b");
  EXPECT_FALSE(node.ready);
  EXPECT_EQ(node.link, nullptr);
  EXPECT_EQ(node.last_telemetry, absl::Time());
  EXPECT_EQ(registry_.Find("gpu-b"), &node);
  EXPECT_EQ(&registry_.Remember("gpu-b"), &node);
  EXPECT_EQ(registry_.size(), 1u);
}

TEST_F(NodeRegistryTest, RememberLeavesARegisteredNodeAlone) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build();
  NodeRecord& node = Register(link_, info);

  EXPECT_EQ(&registry_.Remember("gpu-a"), &node);
  EXPECT_TRUE(node.connected());
  EXPECT_THAT(node.info, EqualsProto(info));
}

// ---- Heard and TakeTelemetry ----

TEST_F(NodeRegistryTest, HeardSaysWhetherTheNodeCameBack) {
  struct Case {
    std::string name;
    bool ready;
    bool came_back;
  };
  const std::vector<Case> cases = {
      {"ready node", true, false},
      {"down node", false, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    NodeRegistry registry(&GpuCatalog());
    AgentLink* replaced = nullptr;
    NodeRecord& node = registry.Register(&link_, NodeInfoBuilder("gpu-a").Build(), kT0, &replaced);
    node.ready = c.ready;
    node.message = "a message";

    EXPECT_EQ(registry.Heard(node, kT0 + absl::Seconds(3)), c.came_back);
    EXPECT_TRUE(node.ready);
    EXPECT_EQ(node.last_seen, kT0 + absl::Seconds(3));
    EXPECT_EQ(node.message, c.came_back ? "" : "a message");
    // Heartbeats are not telemetry.
    EXPECT_EQ(node.last_telemetry, kT0);
  }
}

TEST_F(NodeRegistryTest, TakeTelemetrySaysWhetherPlacementSeesTheNodeDifferently) {
  using Holds = std::map<int32_t, std::pair<std::string, std::string>>;
  struct Case {
    std::string name;
    Holds before;
    Holds after;
    // Since the previous telemetry.
    absl::Duration age;
    bool changed;
  };
  const std::vector<Case> cases = {
      {"fresh, no pods", {}, {}, absl::Seconds(2), false},
      {"fresh, the same pod holds the same GPU",
       {{0, {"ml", "infer-0"}}},
       {{0, {"ml", "infer-0"}}},
       absl::Seconds(2),
       false},
      {"a pod took a GPU", {}, {{1, {"ml", "infer-0"}}}, absl::Seconds(2), true},
      {"a pod let go of a GPU", {{0, {"ml", "infer-0"}}}, {}, absl::Seconds(2), true},
      {"another pod holds the GPU",
       {{0, {"ml", "infer-0"}}},
       {{0, {"ml", "infer-1"}}},
       absl::Seconds(2),
       true},
      {"the pod of another namespace holds the GPU",
       {{0, {"ml", "infer-0"}}},
       {{0, {"web", "infer-0"}}},
       absl::Seconds(2),
       true},
      {"the pod moved to another GPU",
       {{0, {"ml", "infer-0"}}},
       {{1, {"ml", "infer-0"}}},
       absl::Seconds(2),
       true},
      {"readings older than the freshness", {}, {}, kFreshness + absl::Seconds(1), true},
      {"readings exactly as old as the freshness", {}, {}, kFreshness, false},
      {"stale and a pod took a GPU", {}, {{0, {"ml", "infer-0"}}}, absl::Minutes(5), true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    NodeRegistry registry(&GpuCatalog());
    AgentLink* replaced = nullptr;
    NodeRecord& node =
        registry.Register(&link_, NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build(), kT0, &replaced);
    registry.TakeTelemetry(node, SampleHolding(c.before), kFreshness);
    ASSERT_EQ(node.last_telemetry, kT0);

    const v1::NodeSample after = SampleHolding(c.after);
    registry.Heard(node, kT0 + c.age);
    EXPECT_EQ(registry.TakeTelemetry(node, after, kFreshness), c.changed);
    EXPECT_THAT(node.last_sample, EqualsProto(after));
    EXPECT_EQ(node.last_telemetry, kT0 + c.age);
  }
}

TEST_F(NodeRegistryTest, TakeTelemetryIgnoresHoldsOnDevicesOtherThanGpus) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Cpu(0).Gpus(1, "V100").Build());
  v1::NodeSample held_cpu = SampleHolding({});
  HoldBy(AddReading(held_cpu, v1::DEVICE_KIND_CPU, 0, 50), "ml", "infer-0");

  registry_.Heard(node, kT0 + absl::Seconds(1));
  EXPECT_FALSE(registry_.TakeTelemetry(node, held_cpu, kFreshness));
  registry_.Heard(node, kT0 + absl::Seconds(2));
  EXPECT_FALSE(registry_.TakeTelemetry(node, SampleHolding({}), kFreshness));
}

TEST_F(NodeRegistryTest, TelemetryAfterStaleTelemetryIsFreshAgain) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build());

  registry_.Heard(node, kT0 + absl::Minutes(1));
  EXPECT_TRUE(registry_.TakeTelemetry(node, SampleHolding({}), kFreshness));
  registry_.Heard(node, kT0 + absl::Minutes(1) + absl::Seconds(2));
  EXPECT_FALSE(registry_.TakeTelemetry(node, SampleHolding({}), kFreshness));
}

TEST_F(NodeRegistryTest, HeartbeatsDoNotKeepTelemetryFresh) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build());

  for (int i = 1; i <= 6; ++i) registry_.Heard(node, kT0 + absl::Seconds(5 * i));

  EXPECT_TRUE(registry_.TakeTelemetry(node, SampleHolding({}), kFreshness));
}

TEST_F(NodeRegistryTest, TakeTelemetryCopiesTheSourcesItCarries) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a")
                                         .Gpus(1, "V100")
                                         .Source("nvml", v1::SourceStatus::STATE_OK)
                                         .Source("rapl", v1::SourceStatus::STATE_OK)
                                         .Build());

  // Without sources: the registered ones stay.
  registry_.TakeTelemetry(node, SampleHolding({}), kFreshness);
  ASSERT_THAT(node.info.sources(), SizeIs(2));
  EXPECT_EQ(node.info.sources(1).name(), "rapl");

  v1::NodeSample degraded = SampleHolding({});
  v1::SourceStatus* nvml = degraded.add_sources();
  nvml->set_name("nvml");
  nvml->set_state(v1::SourceStatus::STATE_DEGRADED);
  nvml->set_message("NVML_ERROR_GPU_IS_LOST");
  registry_.TakeTelemetry(node, degraded, kFreshness);

  ASSERT_THAT(node.info.sources(), SizeIs(1));
  EXPECT_THAT(node.info.sources(0), EqualsProto(*nvml));
}

// ---- Silent ----

TEST_F(NodeRegistryTest, SilentListsNodesQuietPastTheTimeoutThatMatter) {
  constexpr absl::Duration kTimeout = absl::Seconds(30);
  const absl::Time now = kT0 + absl::Minutes(10);
  struct Case {
    std::string name;
    bool linked;
    bool ready;
    bool has_tasks;
    absl::Duration silent_for;
    bool listed;
  };
  const std::vector<Case> cases = {
      {"ready, silent past the timeout", true, true, false, kTimeout + absl::Seconds(1), true},
      {"ready with tasks, silent", true, true, true, kTimeout + absl::Seconds(1), true},
      {"ready, silent exactly the timeout", true, true, false, kTimeout, false},
      {"ready, heard recently", true, true, true, absl::Seconds(5), false},
      {"ready, stream closed, silent", false, true, false, kTimeout + absl::Seconds(1), true},
      {"down with tasks, stream closed, silent", false, false, true, kTimeout + absl::Seconds(1),
       true},
      {"down with tasks, stream closed, heard recently", false, false, true, absl::Seconds(5),
       false},
      {"down without tasks, stream closed, silent", false, false, false, absl::Hours(1), false},
      {"down with tasks, connected, silent", true, false, true, absl::Hours(1), false},
      {"down without tasks, connected, silent", true, false, false, absl::Hours(1), false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    NodeRegistry registry(&GpuCatalog());
    AgentLink* replaced = nullptr;
    NodeRecord& node = registry.Register(&link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build(),
                                         now - c.silent_for, &replaced);
    if (!c.linked) registry.Disconnect(&link_);
    node.ready = c.ready;
    if (c.has_tasks) registry.Allocate("gpu-a", "job-1.r0.a1", {0}, 1, 0);

    const std::vector<NodeRecord*> silent = registry.Silent(now, kTimeout);

    if (c.listed) {
      EXPECT_THAT(silent, ElementsAre(&node));
    } else {
      EXPECT_THAT(silent, IsEmpty());
    }
  }
}

TEST_F(NodeRegistryTest, SilentIsInNameOrder) {
  FakeAgentLink links[4];
  const std::vector<std::string> names = {"gpu-c", "gpu-a", "gpu-d", "gpu-b"};
  for (size_t i = 0; i < names.size(); ++i) {
    // gpu-d is heard last, within the timeout.
    Register(links[i], NodeInfoBuilder(names[i]).Build(),
             names[i] == "gpu-d" ? kT0 + absl::Seconds(50) : kT0);
  }

  std::vector<std::string> silent;
  for (NodeRecord* node : registry_.Silent(kT0 + absl::Minutes(1), absl::Seconds(30))) {
    silent.push_back(node->info.name());
  }

  EXPECT_THAT(silent, ElementsAre("gpu-a", "gpu-b", "gpu-c"));
}

// ---- Allocate and Release ----

TEST_F(NodeRegistryTest, AllocateAndReleaseKeepTheTasksResources) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(4, "V100").Build());

  registry_.Allocate("gpu-a", "job-1.r0.a1", {0, 1}, 2.5, 4 * kGiB);
  registry_.Allocate("gpu-a", "job-2.r0.a1", {3}, 1, 1 * kGiB);
  EXPECT_THAT(node.task_ids, ElementsAre("job-1.r0.a1", "job-2.r0.a1"));
  EXPECT_THAT(node.used_gpus, ElementsAre(0, 1, 3));
  EXPECT_DOUBLE_EQ(node.used_cpus, 3.5);
  EXPECT_EQ(node.used_memory_bytes, 5 * kGiB);

  EXPECT_EQ(registry_.Release("gpu-a", "job-1.r0.a1", {0, 1}, 2.5, 4 * kGiB), &node);
  EXPECT_THAT(node.task_ids, ElementsAre("job-2.r0.a1"));
  EXPECT_THAT(node.used_gpus, ElementsAre(3));
  EXPECT_DOUBLE_EQ(node.used_cpus, 1);
  EXPECT_EQ(node.used_memory_bytes, 1 * kGiB);
}

TEST_F(NodeRegistryTest, ReleaseOfWhatNoTaskHoldsChangesNothing) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(4, "V100").Build());
  registry_.Allocate("gpu-a", "job-1.r0.a1", {0}, 2, 4 * kGiB);

  struct Case {
    std::string name;
    std::string node;
    std::string task_id;
  };
  const std::vector<Case> cases = {
      {"unknown task", "gpu-a", "job-9.r0.a1"},
      {"unknown node", "gpu-z", "job-1.r0.a1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(registry_.Release(c.node, c.task_id, {0}, 2, 4 * kGiB), nullptr);
    EXPECT_THAT(node.task_ids, ElementsAre("job-1.r0.a1"));
    EXPECT_THAT(node.used_gpus, ElementsAre(0));
    EXPECT_EQ(node.used_cpus, 2);
    EXPECT_EQ(node.used_memory_bytes, 4 * kGiB);
  }
  EXPECT_EQ(registry_.Find("gpu-z"), nullptr);
}

TEST_F(NodeRegistryTest, ReleasingTwiceGivesBackOnce) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build());
  registry_.Allocate("gpu-a", "job-1.r0.a1", {0}, 2, 4 * kGiB);
  registry_.Allocate("gpu-a", "job-2.r0.a1", {1}, 2, 4 * kGiB);

  ASSERT_EQ(registry_.Release("gpu-a", "job-1.r0.a1", {0}, 2, 4 * kGiB), &node);
  EXPECT_EQ(registry_.Release("gpu-a", "job-1.r0.a1", {0}, 2, 4 * kGiB), nullptr);

  EXPECT_THAT(node.used_gpus, ElementsAre(1));
  EXPECT_EQ(node.used_cpus, 2);
  EXPECT_EQ(node.used_memory_bytes, 4 * kGiB);
}

// ---- Send, Reachable, GpuAt, StaticShareW ----

TEST_F(NodeRegistryTest, SendReachesOnlyALiveStream) {
  Register(link_, NodeInfoBuilder("gpu-a").Build());
  v1::SchedulerCommand stop;
  stop.mutable_stop_task()->set_task_id("job-1.r0.a1");

  EXPECT_TRUE(registry_.Reachable("gpu-a"));
  EXPECT_TRUE(registry_.Send("gpu-a", stop));
  EXPECT_THAT(link_.StoppedTaskIds(), ElementsAre("job-1.r0.a1"));

  EXPECT_FALSE(registry_.Reachable("gpu-b"));
  EXPECT_FALSE(registry_.Send("gpu-b", stop));

  registry_.Disconnect(&link_);
  EXPECT_FALSE(registry_.Reachable("gpu-a"));
  EXPECT_FALSE(registry_.Send("gpu-a", stop));
  EXPECT_THAT(link_.All(), SizeIs(1));
}

TEST_F(NodeRegistryTest, SendGoesToTheNewestStream) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Build();
  Register(link_, info);
  AgentLink* replaced = nullptr;
  registry_.Register(&other_link_, info, kT0 + absl::Seconds(1), &replaced);
  v1::SchedulerCommand ack;
  ack.mutable_ack_task_event()->set_task_id("job-1.r0.a1");

  EXPECT_TRUE(registry_.Send("gpu-a", ack));

  EXPECT_THAT(link_.All(), IsEmpty());
  EXPECT_THAT(other_link_.AckedTaskIds(), ElementsAre("job-1.r0.a1"));
}

TEST_F(NodeRegistryTest, ARememberedNodeIsNotReachable) {
  registry_.Remember("gpu-a");
  EXPECT_FALSE(registry_.Reachable("gpu-a"));
  EXPECT_FALSE(registry_.Send("gpu-a", v1::SchedulerCommand()));
}

TEST_F(NodeRegistryTest, GpuAtFindsGpusOnly) {
  // CPU package 0 comes first: a lookup by index alone finds it.
  Register(link_, NodeInfoBuilder("gpu-a").Cpu(0).Gpus(1, "V100").Gpus(1, "A40").Build());

  const v1::Device* gpu0 = registry_.GpuAt("gpu-a", 0);
  ASSERT_NE(gpu0, nullptr);
  EXPECT_EQ(gpu0->kind(), v1::DEVICE_KIND_GPU);
  EXPECT_EQ(gpu0->model(), "V100");
  const v1::Device* gpu1 = registry_.GpuAt("gpu-a", 1);
  ASSERT_NE(gpu1, nullptr);
  EXPECT_EQ(gpu1->model(), "A40");
  EXPECT_EQ(registry_.GpuAt("gpu-a", 2), nullptr);
  EXPECT_EQ(registry_.GpuAt("gpu-b", 0), nullptr);
}

TEST_F(NodeRegistryTest, StaticShareWIsTheGpusShareOfTheStaticPower) {
  Register(link_, NodeInfoBuilder("gpu-a").Cpu(0).Cpu(1).Gpus(4, "V100").StaticPower(60).Build());
  Register(other_link_, NodeInfoBuilder("cpu-a").Cpu(0).StaticPower(60).Build());
  struct Case {
    std::string node;
    int gpus;
    double share_w;
  };
  const std::vector<Case> cases = {
      {"gpu-a", 0, 0},  {"gpu-a", 1, 15}, {"gpu-a", 2, 30},
      {"gpu-a", 4, 60}, {"cpu-a", 1, 0},  {"unknown", 1, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.node, " x", c.gpus));
    EXPECT_DOUBLE_EQ(registry_.StaticShareW(c.node, c.gpus), c.share_w);
  }
}

// ---- ToProto ----

TEST_F(NodeRegistryTest, ToProtoShowsTheNodeAndWhatIsFree) {
  const v1::NodeInfo info = NodeInfoBuilder("gpu-a").Cpu(0).Gpus(4, "V100").Build();
  NodeRecord& node = Register(link_, info);
  registry_.Allocate("gpu-a", "job-2.r0.a1", {1}, 1, 1 * kGiB);
  registry_.Allocate("gpu-a", "job-1.r0.a1", {0}, 2.5, 4 * kGiB);
  v1::NodeSample sample;
  // Pods hold GPU 0 (Joule's too: counted once) and GPU 2; a pod's hold
  // of a CPU package takes no GPU.
  HoldBy(AddGpuReading(sample, 0), "ml", "infer-0");
  AddGpuReading(sample, 1);
  HoldBy(AddGpuReading(sample, 2), "ml", "infer-1");
  AddGpuReading(sample, 3);
  HoldBy(AddReading(sample, v1::DEVICE_KIND_CPU, 3, 50), "ml", "infer-2");
  registry_.Heard(node, kT0 + absl::Seconds(2));
  registry_.TakeTelemetry(node, sample, kFreshness);
  node.message = "a message";

  const v1::Node out = NodeRegistry::ToProto(node, /*suspended=*/false);

  EXPECT_THAT(out.info(), EqualsProto(info));
  EXPECT_EQ(out.state(), v1::NODE_STATE_READY);
  EXPECT_EQ(out.message(), "a message");
  ASSERT_TRUE(out.has_last_seen());
  EXPECT_EQ(FromProtoTime(out.last_seen()), kT0 + absl::Seconds(2));
  EXPECT_THAT(out.last_sample(), EqualsProto(sample));
  EXPECT_THAT(out.task_ids(), ElementsAre("job-1.r0.a1", "job-2.r0.a1"));
  EXPECT_EQ(out.free_gpus(), 1);
  EXPECT_DOUBLE_EQ(out.free_cpus(), 8 - 3.5);
  EXPECT_EQ(out.free_memory_bytes(), 16 * kGiB - 5 * kGiB);
}

TEST_F(NodeRegistryTest, ToProtoStates) {
  enum class How { kRegistered, kDisconnected, kMarkedDown, kRemembered };
  struct Case {
    std::string name;
    How how;
    bool suspended;
    v1::NodeState state;
  };
  const std::vector<Case> cases = {
      {"connected", How::kRegistered, false, v1::NODE_STATE_READY},
      {"connected, suspending", How::kRegistered, true, v1::NODE_STATE_SUSPENDED},
      {"stream closed", How::kDisconnected, false, v1::NODE_STATE_DOWN},
      {"stream closed, suspended", How::kDisconnected, true, v1::NODE_STATE_SUSPENDED},
      {"marked down, stream open", How::kMarkedDown, false, v1::NODE_STATE_DOWN},
      {"known from the store", How::kRemembered, false, v1::NODE_STATE_DOWN},
      {"known from the store, suspended", How::kRemembered, true, v1::NODE_STATE_SUSPENDED},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    NodeRegistry registry(&GpuCatalog());
    NodeRecord* node = nullptr;
    if (c.how == How::kRemembered) {
      node = &registry.Remember("gpu-a");
    } else {
      AgentLink* replaced = nullptr;
      node = &registry.Register(&link_, NodeInfoBuilder("gpu-a").Build(), kT0, &replaced);
      if (c.how == How::kDisconnected) registry.Disconnect(&link_);
      if (c.how == How::kMarkedDown) node->ready = false;
    }
    EXPECT_EQ(NodeRegistry::ToProto(*node, c.suspended).state(), c.state);
  }
}

TEST_F(NodeRegistryTest, ToProtoOfANodeNeverHeardFromHasNoLastSeen) {
  NodeRecord& node = registry_.Remember("gpu-a");
  registry_.Allocate("gpu-a", "job-1.r0.a1", {}, 1, 0);

  const v1::Node out = NodeRegistry::ToProto(node, /*suspended=*/false);

  EXPECT_FALSE(out.has_last_seen());
  EXPECT_EQ(out.info().name(), "gpu-a");
  EXPECT_THAT(out.task_ids(), ElementsAre("job-1.r0.a1"));
  EXPECT_EQ(out.free_gpus(), 0);
}

// ---- View ----

TEST_F(NodeRegistryTest, ViewIsWhatPlacementSees) {
  const std::vector<GpuModelSpec> catalog = TestCatalog();
  NodeRegistry registry(&catalog);
  AgentLink* replaced = nullptr;
  NodeRecord& node = registry.Register(&link_,
                                       NodeInfoBuilder("gpu-a")
                                           .Cpu(0)
                                           .Gpus(3, "V100")
                                           .Gpus(1, "Mystery9000")
                                           .StaticPower(80)
                                           .Build(),
                                       kT0, &replaced);
  registry.Allocate("gpu-a", "job-1.r0.a1", {0}, 2, 4 * kGiB);
  v1::NodeSample sample;
  AddGpuReading(sample, 0, 50);
  // CPU package 0's reading is not GPU 0's.
  AddReading(sample, v1::DEVICE_KIND_CPU, 0, 99);
  AddGpuReading(sample, 1, kTestV100ThrottleC - 4);
  HoldBy(AddGpuReading(sample, 2, 40), "ml", "infer-0");
  AddGpuReading(sample, 3, kUnknownModelThrottleC - 4);
  // Readings of GPUs the node did not register.
  AddGpuReading(sample, 7, 99);
  AddGpuReading(sample, -1, 99);
  registry.Heard(node, kT0 + absl::Seconds(2));
  registry.TakeTelemetry(node, sample, kFreshness);

  const NodeView view = registry.View(node, /*thermal_margin_c=*/5);

  EXPECT_EQ(view.name, "gpu-a");
  EXPECT_TRUE(view.ready);
  EXPECT_EQ(view.last_telemetry, kT0 + absl::Seconds(2));
  EXPECT_EQ(view.total_cpus, 8);
  EXPECT_EQ(view.free_cpus, 6);
  EXPECT_EQ(view.total_memory_bytes, 16 * kGiB);
  EXPECT_EQ(view.free_memory_bytes, 12 * kGiB);
  EXPECT_EQ(view.static_power_w, 80);
  EXPECT_EQ(view.running_tasks, 1);
  ASSERT_THAT(view.gpus, SizeIs(4));

  const GpuView& used = view.gpus[0];
  EXPECT_EQ(used.index, 0);
  EXPECT_EQ(used.model, "V100");
  EXPECT_FALSE(used.free);
  EXPECT_EQ(used.temp_c, 50);
  EXPECT_EQ(used.throttle_temp_c, kTestV100ThrottleC);
  EXPECT_FALSE(used.hot);
  EXPECT_EQ(used.held_by, "");
  EXPECT_EQ(used.idle_power_w, 35);
  EXPECT_EQ(used.power_limit_default_w, 250);

  const GpuView& warm = view.gpus[1];
  EXPECT_EQ(warm.index, 1);
  EXPECT_TRUE(warm.free);
  EXPECT_TRUE(warm.hot);

  const GpuView& held = view.gpus[2];
  EXPECT_EQ(held.index, 2);
  EXPECT_FALSE(held.free);
  EXPECT_EQ(held.held_by, "ml/infer-0");
  EXPECT_FALSE(held.hot);

  const GpuView& unknown = view.gpus[3];
  EXPECT_EQ(unknown.index, 3);
  EXPECT_EQ(unknown.model, "Mystery9000");
  EXPECT_TRUE(unknown.free);
  EXPECT_EQ(unknown.throttle_temp_c, kUnknownModelThrottleC);
  EXPECT_TRUE(unknown.hot);
}

TEST_F(NodeRegistryTest, ViewIsHotWithinTheMarginOfTheThrottleTemperature) {
  const std::vector<GpuModelSpec> catalog = TestCatalog();
  struct Case {
    std::string name;
    // No reading when unset.
    std::optional<double> temp_c;
    double margin_c;
    bool hot;
  };
  const std::vector<Case> cases = {
      {"no reading", std::nullopt, 5, false},
      {"cool", 40, 5, false},
      {"just below the margin", kTestV100ThrottleC - 5.1, 5, false},
      {"at the margin", kTestV100ThrottleC - 5, 5, true},
      {"throttling", kTestV100ThrottleC + 10, 5, true},
      {"no margin, just below", kTestV100ThrottleC - 0.1, 0, false},
      {"no margin, at the throttle temperature", kTestV100ThrottleC, 0, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    NodeRegistry registry(&catalog);
    AgentLink* replaced = nullptr;
    NodeRecord& node =
        registry.Register(&link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build(), kT0, &replaced);
    v1::NodeSample sample;
    if (c.temp_c.has_value()) AddGpuReading(sample, 0, *c.temp_c);
    registry.TakeTelemetry(node, sample, kFreshness);

    const NodeView view = registry.View(node, c.margin_c);

    ASSERT_THAT(view.gpus, SizeIs(1));
    EXPECT_EQ(view.gpus[0].hot, c.hot);
    EXPECT_TRUE(view.gpus[0].free);
  }
}

TEST_F(NodeRegistryTest, ViewOfADisconnectedNodeIsNotReady) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(1, "V100").Build());
  registry_.Disconnect(&link_);

  EXPECT_FALSE(registry_.View(node, 5).ready);
}

TEST_F(NodeRegistryTest, ViewFollowsTheLatestSample) {
  NodeRecord& node = Register(link_, NodeInfoBuilder("gpu-a").Gpus(2, "V100").Build());
  registry_.TakeTelemetry(node, SampleHolding({{1, {"ml", "infer-0"}}}), kFreshness);
  ASSERT_FALSE(registry_.View(node, 5).gpus[1].free);

  // The pod let go, and the sample is shorter than the one before.
  v1::NodeSample one_gpu;
  AddGpuReading(one_gpu, 0, 45);
  registry_.TakeTelemetry(node, one_gpu, kFreshness);
  const NodeView view = registry_.View(node, 5);

  ASSERT_THAT(view.gpus, SizeIs(2));
  EXPECT_EQ(view.gpus[0].temp_c, 45);
  EXPECT_TRUE(view.gpus[1].free);
  EXPECT_EQ(view.gpus[1].held_by, "");
  EXPECT_EQ(view.gpus[1].temp_c, 0);
}

// ---- PodHeldGpus ----

TEST(PodHeldGpusTest, GpusHeldByPodsByIndex) {
  v1::NodeSample sample;
  HoldBy(AddGpuReading(sample, 3), "ml", "infer-0");
  AddGpuReading(sample, 1);
  HoldBy(AddGpuReading(sample, 0), "web", "api-7");
  HoldBy(AddReading(sample, v1::DEVICE_KIND_CPU, 2, 50), "ml", "infer-1");

  EXPECT_THAT(PodHeldGpus(sample), ElementsAre(Pair(0, "web/api-7"), Pair(3, "ml/infer-0")));
  EXPECT_THAT(PodHeldGpus(v1::NodeSample()), IsEmpty());
}

// ---- ValidateRegister ----

TEST(ValidateRegisterTest, Table) {
  struct Case {
    std::string name;
    std::function<void(v1::NodeInfo&)> change;
    // Empty: valid. Else substrings of the INVALID_ARGUMENT message.
    std::vector<std::string> error;
  };
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  auto gpu = [](v1::NodeInfo& node, int i) -> v1::Device& {
    // Devices: CPU 0, then GPUs 0 and 1.
    return *node.mutable_devices(i + 1);
  };
  const std::vector<Case> cases = {
      {"valid", [](v1::NodeInfo&) {}, {}},
      {"a GPU and a CPU share an index",
       [](v1::NodeInfo& n) {
         v1::Device* cpu = n.add_devices();
         cpu->set_kind(v1::DEVICE_KIND_CPU);
         cpu->set_index(1);
       },
       {}},
      {"min equals max", [&](v1::NodeInfo& n) { gpu(n, 0).set_power_limit_min_w(250); }, {}},
      {"empty name", [](v1::NodeInfo& n) { n.set_name(""); }, {"register.node.name"}},
      {"upper-case name",
       [](v1::NodeInfo& n) { n.set_name("GPU-A"); },
       {"register.node.name", "GPU-A"}},
      {"name with an underscore",
       [](v1::NodeInfo& n) { n.set_name("gpu_a"); },
       {"register.node.name", "gpu_a"}},
      {"negative cpus",
       [](v1::NodeInfo& n) { n.set_cpus(-1); },
       {"register.node", "cpus", "gpu-a"}},
      {"NaN cpus", [&](v1::NodeInfo& n) { n.set_cpus(kNaN); }, {"cpus", "gpu-a"}},
      {"negative memory",
       [](v1::NodeInfo& n) { n.set_memory_bytes(-1); },
       {"memory_bytes", "gpu-a"}},
      {"negative static power",
       [](v1::NodeInfo& n) { n.set_static_power_w(-5); },
       {"static_power_w", "gpu-a"}},
      {"duplicate GPU index",
       [&](v1::NodeInfo& n) { gpu(n, 1).set_index(0); },
       {"register.node.devices", "duplicate", "index 0", "gpu-a"}},
      {"negative GPU index",
       [&](v1::NodeInfo& n) { gpu(n, 1).set_index(-1); },
       {"register.node.devices", "index -1", "gpu-a"}},
      {"min above max power limit",
       [&](v1::NodeInfo& n) {
         gpu(n, 1).set_power_limit_min_w(300);
         gpu(n, 1).set_power_limit_max_w(250);
       },
       {"register.node.devices[1]", "power limits", "min <= max", "gpu-a"}},
      {"negative min power limit",
       [&](v1::NodeInfo& n) { gpu(n, 0).set_power_limit_min_w(-1); },
       {"register.node.devices[0]", "power limits", "gpu-a"}},
      {"NaN max power limit",
       [&](v1::NodeInfo& n) { gpu(n, 0).set_power_limit_max_w(kNaN); },
       {"register.node.devices[0]", "power limits", "gpu-a"}},
      {"negative idle power",
       [&](v1::NodeInfo& n) { gpu(n, 0).set_idle_power_w(-1); },
       {"register.node.devices[0]", "idle power", "gpu-a"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Register message;
    *message.mutable_node() = NodeInfoBuilder("gpu-a").Cpu(0).Gpus(2, "V100").Build();
    c.change(*message.mutable_node());

    const absl::Status status = ValidateRegister(message);

    if (c.error.empty()) {
      EXPECT_TRUE(status.ok()) << status;
      continue;
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    for (const std::string& part : c.error) {
      EXPECT_THAT(std::string(status.message()), HasSubstr(part));
    }
  }
}

}  // namespace
}  // namespace joule
