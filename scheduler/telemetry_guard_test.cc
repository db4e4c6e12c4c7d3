#include "scheduler/telemetry_guard.h"

#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/device_catalog.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// GPU 0: a V100 with a 250 W maximum limit (ceiling 500 W); GPU 1: an A40
// that reported no limits (the catalog's 300 W: ceiling 600 W); CPU
// package 0 with a 150 W limit (ceiling 300 W); 60 W static. The node's
// ceiling: 500 + 600 + 300 + 2 x 60 + 1000 = 2520 W.
v1::NodeInfo Node() {
  v1::NodeInfo node;
  node.set_name("gpu-a");
  node.set_static_power_w(60);
  v1::Device* v100 = node.add_devices();
  v100->set_kind(v1::DEVICE_KIND_GPU);
  v100->set_index(0);
  v100->set_model("V100");
  v100->set_power_limit_min_w(100);
  v100->set_power_limit_max_w(250);
  v1::Device* a40 = node.add_devices();
  a40->set_kind(v1::DEVICE_KIND_GPU);
  a40->set_index(1);
  a40->set_model("A40");
  v1::Device* cpu = node.add_devices();
  cpu->set_kind(v1::DEVICE_KIND_CPU);
  cpu->set_index(0);
  cpu->set_power_limit_max_w(150);
  return node;
}

v1::DeviceSample* AddDevice(v1::NodeSample* sample, v1::DeviceKind kind, int32_t index) {
  v1::DeviceSample* device = sample->add_devices();
  device->set_kind(kind);
  device->set_index(index);
  device->set_power_w(200);
  device->set_energy_j(1000);
  device->set_temp_c(60);
  device->set_utilization(0.5);
  device->set_memory_utilization(0.3);
  device->set_power_cap_w(250);
  device->set_sm_clock_mhz(1300);
  device->set_mem_clock_mhz(877);
  return device;
}

// A plausible sample: both GPUs, the CPU package and the node's power.
v1::NodeSample GoodSample() {
  v1::NodeSample sample;
  AddDevice(&sample, v1::DEVICE_KIND_GPU, 0);
  AddDevice(&sample, v1::DEVICE_KIND_GPU, 1);
  AddDevice(&sample, v1::DEVICE_KIND_CPU, 0)->set_power_w(80);
  sample.set_node_power_w(540);
  return sample;
}

class TelemetryGuardTest : public ::testing::Test {
 protected:
  TelemetryGuardTest() { guard_.Register(Node()); }
  TelemetryGuard guard_{GpuCatalog()};
};

TEST_F(TelemetryGuardTest, CeilingsComeFromLimitsThenTheCatalogThenTheAbsoluteCap) {
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("gpu-a", v1::DEVICE_KIND_GPU, 0), 500);
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("gpu-a", v1::DEVICE_KIND_GPU, 1), 600);
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("gpu-a", v1::DEVICE_KIND_CPU, 0), 300);
  // Not registered: the absolute 10 kW.
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("gpu-a", v1::DEVICE_KIND_GPU, 7), 10000);
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("gpu-a", v1::DEVICE_KIND_MEMORY, 0), 10000);
  EXPECT_DOUBLE_EQ(guard_.NodeCeilingW("gpu-a"), 2520);
  EXPECT_DOUBLE_EQ(guard_.NodeCeilingW("unknown"), 11000);
  // Absurd registered limits are capped too.
  v1::NodeInfo absurd = Node();
  absurd.set_name("absurd");
  absurd.mutable_devices(0)->set_power_limit_max_w(1e12);
  absurd.set_static_power_w(kInf);
  guard_.Register(absurd);
  EXPECT_DOUBLE_EQ(guard_.DeviceCeilingW("absurd", v1::DEVICE_KIND_GPU, 0), 10000);
  EXPECT_DOUBLE_EQ(guard_.NodeCeilingW("absurd"), 10000 + 600 + 300 + 20000 + 1000);
}

struct SampleCase {
  std::string name;
  std::function<void(v1::NodeSample*)> mutate;
  // Empty: accepted.
  std::string reason;
  std::string detail = "";
};

TEST_F(TelemetryGuardTest, SamplesTable) {
  const auto gpu0 = [](v1::NodeSample* s) { return s->mutable_devices(0); };
  const auto gpu1 = [](v1::NodeSample* s) { return s->mutable_devices(1); };
  const std::vector<SampleCase> cases = {
      {"plausible", [](v1::NodeSample*) {}, ""},
      {"no devices", [](v1::NodeSample* s) { s->clear_devices(); }, ""},
      {"power NaN", [&](v1::NodeSample* s) { gpu0(s)->set_power_w(kNaN); }, "not_finite",
       "GPU 0: power_w is nan"},
      {"energy -inf", [&](v1::NodeSample* s) { gpu0(s)->set_energy_j(-kInf); }, "not_finite"},
      {"temperature inf", [&](v1::NodeSample* s) { gpu1(s)->set_temp_c(kInf); }, "not_finite",
       "GPU 1: temp_c is inf"},
      {"utilization NaN", [&](v1::NodeSample* s) { gpu0(s)->set_utilization(kNaN); },
       "not_finite"},
      {"memory utilization NaN",
       [&](v1::NodeSample* s) { gpu0(s)->set_memory_utilization(kNaN); }, "not_finite"},
      {"cap NaN", [&](v1::NodeSample* s) { gpu0(s)->set_power_cap_w(kNaN); }, "not_finite"},
      {"node power NaN", [](v1::NodeSample* s) { s->set_node_power_w(kNaN); }, "not_finite",
       "node_power_w is nan"},
      {"node power inf", [](v1::NodeSample* s) { s->set_node_power_w(kInf); }, "not_finite"},
      {"negative power", [&](v1::NodeSample* s) { gpu0(s)->set_power_w(-1); }, "negative",
       "GPU 0: power_w is -1"},
      {"negative energy", [&](v1::NodeSample* s) { gpu0(s)->set_energy_j(-5); }, "negative"},
      {"negative cap", [&](v1::NodeSample* s) { gpu0(s)->set_power_cap_w(-5); }, "negative"},
      {"negative clock", [&](v1::NodeSample* s) { gpu0(s)->set_sm_clock_mhz(-1); },
       "negative"},
      {"negative node power", [](v1::NodeSample* s) { s->set_node_power_w(-1); }, "negative"},
      {"a terawatt", [&](v1::NodeSample* s) { gpu0(s)->set_power_w(1e12); },
       "power_above_max", "above its ceiling of 500 W"},
      {"just above 2x the limit", [&](v1::NodeSample* s) { gpu0(s)->set_power_w(500.5); },
       "power_above_max"},
      {"2x the limit", [&](v1::NodeSample* s) { gpu0(s)->set_power_w(500); }, ""},
      {"above 2x the catalog's", [&](v1::NodeSample* s) { gpu1(s)->set_power_w(601); },
       "power_above_max", "GPU 1"},
      {"2x the catalog's", [&](v1::NodeSample* s) { gpu1(s)->set_power_w(600); }, ""},
      {"cap above the ceiling", [&](v1::NodeSample* s) { gpu0(s)->set_power_cap_w(1e6); },
       "power_above_max"},
      {"unregistered device above 10 kW",
       [](v1::NodeSample* s) { AddDevice(s, v1::DEVICE_KIND_MEMORY, 0)->set_power_w(10001); },
       "power_above_max", "memory 0"},
      {"unregistered device below 10 kW",
       [](v1::NodeSample* s) { AddDevice(s, v1::DEVICE_KIND_MEMORY, 0)->set_power_w(20); }, ""},
      {"node above its ceiling", [](v1::NodeSample* s) { s->set_node_power_w(2521); },
       "power_above_max", "ceiling of 2520 W"},
      {"node at its ceiling", [](v1::NodeSample* s) { s->set_node_power_w(2520); }, ""},
      {"too hot", [&](v1::NodeSample* s) { gpu0(s)->set_temp_c(151); },
       "temperature_out_of_range", "temp_c 151 outside [-40, 150]"},
      {"too cold", [&](v1::NodeSample* s) { gpu0(s)->set_temp_c(-41); },
       "temperature_out_of_range"},
      {"hot but possible", [&](v1::NodeSample* s) { gpu0(s)->set_temp_c(149); }, ""},
      {"no temperature", [&](v1::NodeSample* s) { gpu0(s)->set_temp_c(0); }, ""},
      {"utilization above 1", [&](v1::NodeSample* s) { gpu0(s)->set_utilization(1.01); },
       "utilization_out_of_range"},
      {"utilization as a percentage", [&](v1::NodeSample* s) { gpu0(s)->set_utilization(85); },
       "utilization_out_of_range"},
      {"negative utilization", [&](v1::NodeSample* s) { gpu0(s)->set_utilization(-0.01); },
       "utilization_out_of_range"},
      {"memory utilization above 1",
       [&](v1::NodeSample* s) { gpu0(s)->set_memory_utilization(2); },
       "utilization_out_of_range", "memory_utilization"},
      {"full utilization", [&](v1::NodeSample* s) { gpu0(s)->set_utilization(1); }, ""},
      {"NaN comes first", [&](v1::NodeSample* s) {
         gpu0(s)->set_power_w(1e12);
         gpu0(s)->set_temp_c(kNaN);
       }, "not_finite"},
  };
  for (const SampleCase& c : cases) {
    SCOPED_TRACE(c.name);
    // A fresh guard each time: no counter baselines.
    TelemetryGuard guard(GpuCatalog());
    guard.Register(Node());
    v1::NodeSample sample = GoodSample();
    c.mutate(&sample);
    absl::optional<TelemetryProblem> problem = guard.CheckSample("gpu-a", sample, kT0);
    if (c.reason.empty()) {
      EXPECT_FALSE(problem.has_value()) << problem->detail;
      continue;
    }
    ASSERT_TRUE(problem.has_value());
    EXPECT_EQ(TelemetryRejectionLabel(problem->reason), c.reason) << problem->detail;
    EXPECT_THAT(problem->detail, HasSubstr(c.detail));
  }
}

// One GPU's counter (ceiling 500 W, 30 s of grace) over successive samples.
struct CounterStep {
  std::string name;
  absl::Duration at;
  double energy_j;
  std::string reason;  // Empty: accepted.
  bool register_first = false;
};

TEST_F(TelemetryGuardTest, EnergyCountersTable) {
  const std::vector<CounterStep> steps = {
      {"first reading is the baseline", absl::ZeroDuration(), 1e6, ""},
      {"steady", absl::Seconds(1), 1e6 + 400, ""},
      {"no change", absl::Seconds(2), 1e6 + 400, ""},
      // 500 W x (1 s + 30 s) = 15.5 kJ at most.
      {"faster than the ceiling", absl::Seconds(3), 1e6 + 400 + 15501, "energy_above_max"},
      // Refused samples leave the baseline (at 2 s): 500 x 32 s = 16 kJ.
      {"within the allowance since the baseline", absl::Seconds(4), 1e6 + 400 + 15900, ""},
      {"backwards, far from zero", absl::Seconds(5), 5e5, "energy_backwards"},
      {"a counter that started again", absl::Seconds(6), 1200, ""},
      {"and counts on", absl::Seconds(7), 1500, ""},
      // Back to a high value: a jump of more than 15.5 kJ.
      {"jumps", absl::Seconds(8), 5e5, "energy_above_max"},
      // Time heals: 500 W x (1000 s + 30 s) covers the jump.
      {"much later", absl::Seconds(1007), 5e5, ""},
      {"backwards again", absl::Seconds(1008), 1e5, "energy_backwards"},
      // A new registration (the agent restarted) forgets the baselines.
      {"after registering again", absl::Seconds(1009), 1e5, "", true},
  };
  for (const CounterStep& step : steps) {
    SCOPED_TRACE(step.name);
    if (step.register_first) guard_.Register(Node());
    v1::NodeSample sample;
    AddDevice(&sample, v1::DEVICE_KIND_GPU, 0)->set_energy_j(step.energy_j);
    absl::optional<TelemetryProblem> problem =
        guard_.CheckSample("gpu-a", sample, kT0 + step.at);
    if (step.reason.empty()) {
      EXPECT_FALSE(problem.has_value()) << problem->detail;
    } else {
      ASSERT_TRUE(problem.has_value());
      EXPECT_EQ(TelemetryRejectionLabel(problem->reason), step.reason) << problem->detail;
    }
  }
}

v1::Energy Energy(double gpu_j, double cpu_j, double static_j, double total_j) {
  v1::Energy energy;
  energy.set_gpu_j(gpu_j);
  energy.set_cpu_j(cpu_j);
  energy.set_static_j(static_j);
  energy.set_total_j(total_j);
  return energy;
}

struct TaskCase {
  std::string name;
  v1::Energy reported;
  double accounted_j;
  absl::Duration since_submit;
  std::string reason;  // Empty: accepted.
  std::string node = "gpu-a";
};

TEST_F(TelemetryGuardTest, TaskEnergyTable) {
  // gpu-a's ceiling 2520 W x (10 s + 30 s) = 100800 J.
  const absl::Duration ten = absl::Seconds(10);
  const std::vector<TaskCase> cases = {
      {"plausible", Energy(100, 50, 10, 160), 0, ten, ""},
      {"nothing yet", Energy(0, 0, 0, 0), 0, ten, ""},
      {"at the allowance", Energy(100000, 700, 100, 100800), 0, ten, ""},
      {"a terajoule", Energy(1e12, 0, 0, 1e12), 0, ten, "energy_above_max"},
      {"above the allowance", Energy(0, 0, 0, 100801), 0, ten, "energy_above_max"},
      {"components above it", Energy(2e5, 0, 0, 10), 0, ten, "energy_above_max"},
      {"more time, more allowed", Energy(0, 0, 0, 2e5), 0, absl::Seconds(60), ""},
      {"NaN gpu", Energy(kNaN, 0, 0, 10), 0, ten, "not_finite"},
      {"infinite total", Energy(0, 0, 0, kInf), 0, ten, "not_finite"},
      {"negative cpu", Energy(10, -1, 0, 9), 0, ten, "negative"},
      {"backwards", Energy(100, 0, 0, 100), 200, ten, "energy_backwards"},
      {"the same again", Energy(200, 0, 0, 200), 200, ten, ""},
      // A node that never registered: 11 kW x 40 s.
      {"unknown node", Energy(0, 0, 0, 440000), 0, ten, "", "other"},
      {"unknown node, too much", Energy(0, 0, 0, 440001), 0, ten, "energy_above_max", "other"},
  };
  for (const TaskCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::optional<TelemetryProblem> problem = guard_.CheckTaskEnergy(
        c.node, c.reported, Energy(c.accounted_j, 0, 0, c.accounted_j), c.since_submit);
    if (c.reason.empty()) {
      EXPECT_FALSE(problem.has_value()) << problem->detail;
    } else {
      ASSERT_TRUE(problem.has_value());
      EXPECT_EQ(TelemetryRejectionLabel(problem->reason), c.reason) << problem->detail;
    }
  }
}

TEST_F(TelemetryGuardTest, FirstOfOncePerNodeAndReason) {
  EXPECT_TRUE(guard_.FirstOf("gpu-a", TelemetryRejection::kNotFinite));
  EXPECT_FALSE(guard_.FirstOf("gpu-a", TelemetryRejection::kNotFinite));
  EXPECT_TRUE(guard_.FirstOf("gpu-a", TelemetryRejection::kPowerAboveMax));
  EXPECT_TRUE(guard_.FirstOf("gpu-b", TelemetryRejection::kNotFinite));
  // Registering again does not log again.
  guard_.Register(Node());
  EXPECT_FALSE(guard_.FirstOf("gpu-a", TelemetryRejection::kNotFinite));
}

TEST(TelemetryRejectionTest, LabelsAreDistinctSnakeCase) {
  std::set<std::string> labels;
  for (TelemetryRejection reason : kTelemetryRejections) {
    const std::string label(TelemetryRejectionLabel(reason));
    EXPECT_THAT(label, ::testing::MatchesRegex("[a-z_]+"));
    EXPECT_NE(label, "unknown");
    labels.insert(label);
  }
  EXPECT_EQ(labels.size(), std::size(kTelemetryRejections));
}

}  // namespace
}  // namespace joule
