#include "agent/kubelet/pod_energy_metrics.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "agent/kubelet/testing/metric_value.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/node.pb.h"
#include "prometheus/registry.h"

namespace joule {
namespace {

using Labels = std::map<std::string, std::string>;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

// One GPU of a sample: its cumulative energy and who holds it ("" for
// nobody; else "namespace/pod/container").
struct Gpu {
  double energy_j;
  std::string holder;
};

v1::NodeSample Sample(absl::Time time, const std::vector<Gpu>& gpus) {
  v1::NodeSample sample;
  *sample.mutable_time() = ToProtoTime(time);
  for (size_t i = 0; i < gpus.size(); ++i) {
    v1::DeviceSample* device = sample.add_devices();
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_index(static_cast<int32_t>(i));
    device->set_energy_j(gpus[i].energy_j);
    if (gpus[i].holder.empty()) continue;
    std::vector<std::string> parts = absl::StrSplit(gpus[i].holder, '/');
    v1::KubernetesContainer* holder = device->mutable_held_by();
    holder->set_namespace_(parts.at(0));
    holder->set_pod(parts.at(1));
    holder->set_container(parts.at(2));
  }
  // A CPU package: never a pod's.
  v1::DeviceSample* cpu = sample.add_devices();
  cpu->set_kind(v1::DEVICE_KIND_CPU);
  cpu->set_index(0);
  cpu->set_energy_j(1e6);
  return sample;
}

class PodEnergyMetricsTest : public ::testing::Test {
 protected:
  PodEnergyMetrics& Make(PodEnergyMetrics::Options options = {}) {
    metrics_ = std::make_unique<PodEnergyMetrics>(*registry_, "node-a", options);
    return *metrics_;
  }

  // The value of `name`'s series with the labels of `holder`
  // ("namespace/pod/container") on node-a; nullopt when there is none.
  std::optional<double> Value(const std::string& name, const std::string& holder) const {
    std::vector<std::string> parts = absl::StrSplit(holder, '/');
    return Find(name, {{"node", "node-a"},
                       {"namespace", parts.at(0)},
                       {"pod", parts.at(1)},
                       {"container", parts.at(2)}});
  }

  std::optional<double> Find(const std::string& name, const Labels& labels) const {
    return MetricValue(*registry_, name, labels);
  }

  int SeriesOf(const std::string& name) const {
    for (const prometheus::MetricFamily& family : registry_->Collect()) {
      if (family.name == name) return static_cast<int>(family.metric.size());
    }
    return 0;
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<PodEnergyMetrics> metrics_;
};

constexpr char kEnergy[] = "joule_pod_gpu_energy_joules_total";
constexpr char kGpus[] = "joule_pod_gpus";
constexpr char kOverflow[] = "joule_pod_series_overflow_total";

TEST_F(PodEnergyMetricsTest, HeldGpuEnergyGoesToItsHolderByDeltas) {
  PodEnergyMetrics& metrics = Make();
  // GPU 0 free, GPU 1 idle-free, until the pod takes both.
  metrics.OnSample(Sample(kStart, {{100, ""}, {50, ""}}));
  EXPECT_EQ(SeriesOf(kEnergy), 0);
  metrics.OnSample(Sample(kStart + absl::Seconds(1), {{300, "a/p/c"}, {80, "a/p/c"}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 200 + 30);
  EXPECT_EQ(Value(kGpus, "a/p/c"), 2);
  // It lets go of GPU 1: only GPU 0's energy is its.
  metrics.OnSample(Sample(kStart + absl::Seconds(2), {{400, "a/p/c"}, {500, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 330);
  EXPECT_EQ(Value(kGpus, "a/p/c"), 1);
  // A GPU counter that went backwards (reset) adds nothing.
  metrics.OnSample(Sample(kStart + absl::Seconds(3), {{10, "a/p/c"}, {500, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 330);
  metrics.OnSample(Sample(kStart + absl::Seconds(4), {{25, "a/p/c"}, {500, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 345);
  EXPECT_EQ(Find(kOverflow, {{"node", "node-a"}}), 0);
}

TEST_F(PodEnergyMetricsTest, SeriesOfAGonePodStayForTheRetentionThenGo) {
  PodEnergyMetrics& metrics = Make({absl::Minutes(10), 512});
  metrics.OnSample(Sample(kStart, {{0, "a/p/c"}}));
  metrics.OnSample(Sample(kStart + absl::Seconds(10), {{70, "a/p/c"}}));
  // The pod is gone: its series stay, at 0 GPUs, for 10 minutes.
  metrics.OnSample(Sample(kStart + absl::Seconds(20), {{90, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 70);
  EXPECT_EQ(Value(kGpus, "a/p/c"), 0);
  metrics.OnSample(Sample(kStart + absl::Seconds(10) + absl::Minutes(10) - absl::Seconds(1),
                          {{90, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), 70);
  metrics.OnSample(Sample(kStart + absl::Seconds(10) + absl::Minutes(10), {{90, ""}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c"), std::nullopt);
  EXPECT_EQ(Value(kGpus, "a/p/c"), std::nullopt);
  EXPECT_EQ(metrics.series(), 0);
}

TEST_F(PodEnergyMetricsTest, BeyondTheCapEnergyGoesToOverflowAndIsCounted) {
  PodEnergyMetrics& metrics = Make({absl::Minutes(10), 2});
  metrics.OnSample(Sample(kStart, {{0, ""}, {0, ""}, {0, ""}, {0, ""}}));
  metrics.OnSample(Sample(kStart + absl::Seconds(1),
                          {{10, "a/p1/c"}, {20, "a/p2/c"}, {30, "a/p3/c"}, {40, "b/p4/c"}}));
  EXPECT_EQ(metrics.series(), 2);
  EXPECT_EQ(Value(kEnergy, "a/p1/c"), 10);
  EXPECT_EQ(Value(kEnergy, "a/p2/c"), 20);
  EXPECT_EQ(Value(kEnergy, "a/p3/c"), std::nullopt);
  EXPECT_EQ(Value(kEnergy, "/_overflow/"), 70);
  EXPECT_EQ(Value(kGpus, "/_overflow/"), 2);
  EXPECT_EQ(Find(kOverflow, {{"node", "node-a"}}), 2);
  // The same overflowed pods again: not counted again.
  metrics.OnSample(Sample(kStart + absl::Seconds(2),
                          {{10, "a/p1/c"}, {20, "a/p2/c"}, {35, "a/p3/c"}, {45, "b/p4/c"}}));
  EXPECT_EQ(Value(kEnergy, "/_overflow/"), 80);
  EXPECT_EQ(Find(kOverflow, {{"node", "node-a"}}), 2);
  // Every pod gone for the retention: nothing left, the counter kept.
  metrics.OnSample(Sample(kStart + absl::Minutes(20), {{10, ""}, {20, ""}, {35, ""}, {45, ""}}));
  EXPECT_EQ(SeriesOf(kEnergy), 0);
  EXPECT_EQ(SeriesOf(kGpus), 0);
  EXPECT_EQ(Find(kOverflow, {{"node", "node-a"}}), 2);
  // The freed slots take new pods.
  metrics.OnSample(Sample(kStart + absl::Minutes(21), {{15, "c/p5/c"}, {20, ""}, {35, ""}, {45, ""}}));
  EXPECT_EQ(Value(kEnergy, "c/p5/c"), 5);
}

TEST_F(PodEnergyMetricsTest, ContainersOfOnePodHaveTheirOwnSeries) {
  PodEnergyMetrics& metrics = Make();
  metrics.OnSample(Sample(kStart, {{0, ""}, {0, ""}}));
  metrics.OnSample(Sample(kStart + absl::Seconds(1), {{5, "a/p/c1"}, {7, "a/p/c2"}}));
  EXPECT_EQ(Value(kEnergy, "a/p/c1"), 5);
  EXPECT_EQ(Value(kEnergy, "a/p/c2"), 7);
  EXPECT_EQ(Value(kGpus, "a/p/c1"), 1);
}

}  // namespace
}  // namespace joule
