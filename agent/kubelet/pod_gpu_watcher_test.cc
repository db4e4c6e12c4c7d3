#include "agent/kubelet/pod_gpu_watcher.h"

#include <stdlib.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/devices.h"
#include "agent/kubelet/pod_resources.h"
#include "agent/kubelet/testing/fake_kubelet.h"
#include "agent/kubelet/testing/metric_value.h"
#include "agent/kubelet/testing/pod_resources_builder.h"
#include "agent/metrics.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"
#include "prometheus/registry.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

using Labels = std::map<std::string, std::string>;

// V100 idle power (common/device_catalog.cc): the simulated GPUs run no task.
constexpr double kV100IdleW = 35;

// Records the telemetry the agent sends. Thread-safe; guarded by mu_.
class TelemetrySink : public MessageSink {
 public:
  void Send(const v1::AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (message.has_telemetry()) last_ = message.telemetry();
  }
  v1::NodeSample last() const {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  mutable absl::Mutex mu_;
  v1::NodeSample last_ ABSL_GUARDED_BY(mu_);
};

const v1::DeviceSample* FindGpu(const v1::NodeSample& sample, int32_t index) {
  for (const v1::DeviceSample& device : sample.devices()) {
    if (device.kind() == v1::DEVICE_KIND_GPU && device.index() == index) return &device;
  }
  return nullptr;
}

std::optional<v1::SourceStatus> FindSource(const v1::NodeSample& sample,
                                           const std::string& name) {
  for (const v1::SourceStatus& source : sample.sources()) {
    if (source.name() == name) return source;
  }
  return std::nullopt;
}

// The agent of node-a with two simulated V100s (uuids GPU-sim-node-a-0 and
// -1), its metrics, a fake kubelet and the watcher between them, on a
// FakeClock.
class PodGpuWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<FakeKubelet>> kubelet = FakeKubelet::Start();
    ASSERT_TRUE(kubelet.ok()) << kubelet.status();
    kubelet_ = *std::move(kubelet);
    absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
        PodResourcesClient::Create(kubelet_->socket_path());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);

    std::vector<std::unique_ptr<GpuDevice>> gpus;
    for (int32_t i = 0; i < 2; ++i) {
      gpus.push_back(
          std::make_unique<SimulatedGpu>(i, *FindGpuModel("V100"), "node-a", clock_.Now()));
    }
    AgentOptions options;
    options.node_name = "node-a";
    const char* tmp = getenv("TEST_TMPDIR");
    options.work_dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/pod_gpu_watcher_test");
    options.static_power_w = 100;
    agent_ = std::make_unique<Agent>(std::move(options), std::move(gpus), nullptr, &clock_,
                                     nullptr, &metrics_);
    agent_->SetSink(&sink_);
    const v1::Register reg = agent_->MakeRegister();
    watcher_ = std::make_unique<PodGpuWatcher>(
        client_.get(),
        std::vector<v1::Device>(reg.node().devices().begin(), reg.node().devices().end()),
        agent_.get(), &clock_, absl::Seconds(10));
  }

  v1::NodeSample Telemetry() {
    agent_->SendTelemetry();
    return sink_.last();
  }

  std::optional<double> Metric(const std::string& name, const Labels& labels) const {
    return MetricValue(*metrics_.registry(), name, labels);
  }

  FakeClock clock_;
  TelemetrySink sink_;
  AgentMetrics metrics_{"node-a"};
  std::unique_ptr<FakeKubelet> kubelet_;
  std::unique_ptr<PodResourcesClient> client_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<PodGpuWatcher> watcher_;
};

const Labels kPodLabels = {
    {"node", "node-a"}, {"namespace", "team-a"}, {"pod", "infer-0"}, {"container", "server"}};

TEST_F(PodGpuWatcherTest, PodEnergyIsAttributedAndItsGpuMarkedHeld) {
  kubelet_->SetResponse(PodResourcesBuilder()
                            .Pod("team-a", "infer-0")
                            .Container("server")
                            .Devices("nvidia.com/gpu", {"GPU-sim-node-a-1"})
                            .Pod("kube-system", "dns")
                            .Container("coredns")
                            .Cpus({0})
                            .Build());
  const v1::NodeSample before = Telemetry();
  ASSERT_TRUE(watcher_->PollIfDue());
  EXPECT_EQ(kubelet_->calls(), 1);

  clock_.Advance(absl::Seconds(5));
  const v1::NodeSample sample = Telemetry();
  const v1::DeviceSample* held = FindGpu(sample, 1);
  ASSERT_NE(held, nullptr);
  ASSERT_TRUE(held->has_held_by());
  EXPECT_EQ(held->held_by().namespace_(), "team-a");
  EXPECT_EQ(held->held_by().pod(), "infer-0");
  EXPECT_EQ(held->held_by().container(), "server");
  const v1::DeviceSample* free_gpu = FindGpu(sample, 0);
  ASSERT_NE(free_gpu, nullptr);
  EXPECT_FALSE(free_gpu->has_held_by());
  std::optional<v1::SourceStatus> source = FindSource(sample, "kubelet");
  ASSERT_TRUE(source.has_value());
  EXPECT_EQ(source->state(), v1::SourceStatus::STATE_OK);

  // The GPU's energy over the interval it was held is the pod's.
  const double held_j = held->energy_j() - FindGpu(before, 1)->energy_j();
  EXPECT_DOUBLE_EQ(held_j, kV100IdleW * 5);
  EXPECT_EQ(Metric("joule_pod_gpu_energy_joules_total", kPodLabels), held_j);
  EXPECT_EQ(Metric("joule_pod_gpus", kPodLabels), 1);

  // Not due again before the period; then the pod is gone.
  clock_.Advance(absl::Seconds(4));
  EXPECT_FALSE(watcher_->PollIfDue());
  EXPECT_EQ(kubelet_->calls(), 1);
  clock_.Advance(absl::Seconds(6));
  kubelet_->SetResponse(::v1::ListPodResourcesResponse());
  ASSERT_TRUE(watcher_->PollIfDue());
  const v1::NodeSample after = Telemetry();
  EXPECT_FALSE(FindGpu(after, 1)->has_held_by());
  EXPECT_EQ(Metric("joule_pod_gpus", kPodLabels), 0);
  // A GPU's interval goes to whoever holds it when the interval closes: the
  // pod was gone by then.
  EXPECT_EQ(Metric("joule_pod_gpu_energy_joules_total", kPodLabels), held_j);
}

TEST_F(PodGpuWatcherTest, KubeletDownKeepsTheLastHoldersAndDegradesTheSource) {
  kubelet_->SetResponse(PodResourcesBuilder()
                            .Pod("team-a", "infer-0")
                            .Container("server")
                            .Devices("nvidia.com/gpu", {"0"})
                            .Build());
  ASSERT_TRUE(watcher_->Poll().ok());
  kubelet_->SetError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "kubelet restarting"));
  const absl::Status status = watcher_->Poll();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  const v1::NodeSample sample = Telemetry();
  EXPECT_TRUE(FindGpu(sample, 0)->has_held_by());
  std::optional<v1::SourceStatus> source = FindSource(sample, "kubelet");
  ASSERT_TRUE(source.has_value());
  EXPECT_EQ(source->state(), v1::SourceStatus::STATE_DEGRADED);
  EXPECT_THAT(source->message(), HasSubstr("kubelet restarting"));
  EXPECT_EQ(Metric("joule_agent_source_degraded", {{"node", "node-a"}, {"source", "kubelet"}}),
            1);
  // Back: recovered.
  kubelet_->SetResponse(::v1::ListPodResourcesResponse());
  ASSERT_TRUE(watcher_->Poll().ok());
  const v1::NodeSample next = Telemetry();
  EXPECT_FALSE(FindGpu(next, 0)->has_held_by());
  EXPECT_EQ(FindSource(next, "kubelet")->state(), v1::SourceStatus::STATE_OK);
}

TEST_F(PodGpuWatcherTest, UnknownDeviceIdsAreReportedAndTheRestUsed) {
  kubelet_->SetResponse(PodResourcesBuilder()
                            .Pod("team-a", "infer-0")
                            .Container("server")
                            .Devices("nvidia.com/gpu", {"GPU-elsewhere", "GPU-sim-node-a-0"})
                            .Build());
  const absl::Status status = watcher_->Poll();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  const v1::NodeSample sample = Telemetry();
  EXPECT_TRUE(FindGpu(sample, 0)->has_held_by());
  std::optional<v1::SourceStatus> source = FindSource(sample, "kubelet");
  ASSERT_TRUE(source.has_value());
  EXPECT_EQ(source->state(), v1::SourceStatus::STATE_DEGRADED);
  EXPECT_THAT(source->message(), HasSubstr("GPU-elsewhere"));
  EXPECT_EQ(source->errors(), 1);
  EXPECT_EQ(
      Metric("joule_agent_sample_errors_total", {{"node", "node-a"}, {"source", "kubelet"}}),
      1);
}

}  // namespace
}  // namespace joule
