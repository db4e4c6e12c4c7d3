// End-to-end tests of the agent on "real" hardware: the real joule-agent
// binary loads the fake libnvidia-ml.so.1 through its dlopen path and reads
// fixture sysfs trees (RAPL, cpufreq); the real scheduler and joulectl drive
// it. Fakes only at the hardware boundary.

#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/cpu/fixture_tree.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

constexpr char kRaplLimit[] = "sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw";
constexpr char kMaxFreq[] = "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A node with two fake V100s behind NVML, one RAPL package with DRAM, and
// one cpufreq policy.
class HardwareTest : public ::testing::Test {
 protected:
  HardwareTest() : cluster_("hardware"), tree_("hardware-sys") {
    tree_.Rapl(0, "package-0", 1'000'000, 262143328850)
        .RaplConstraint(0, 0, "long_term", 125'000'000, 999424)
        .Dram(0, 0, 500'000, 65712999613)
        .Cpufreq(0, 800000, 3500000, 1200000, 800000, 3500000, "0 1");
    nvml_state_ = cluster_.WriteFile("nvml.state", std::string(R"(
device 0 name="Tesla V100-PCIE-16GB" uuid=GPU-aaaa0000 memory_mib=16160 power_mw=65000 energy_mj=1000000 temp_c=41 util_gpu=5 util_mem=1 sm_mhz=1380 mem_mhz=877 max_sm_mhz=1380 max_mem_mhz=877 limit_min_mw=100000 limit_max_mw=250000 limit_default_mw=250000 limit_mw=250000
device 1 name="Tesla V100-PCIE-16GB" uuid=GPU-bbbb1111 memory_mib=16160 power_mw=66000 energy_mj=2000000 temp_c=43 util_gpu=0 util_mem=0 sm_mhz=1380 mem_mhz=877 max_sm_mhz=1380 max_mem_mhz=877 limit_min_mw=100000 limit_max_mw=250000 limit_default_mw=250000 limit_mw=250000
)"));
  }

  std::vector<std::string> HardwareFlags() const {
    return {absl::StrCat("--sysfs-root=", tree_.sys()),
            absl::StrCat("--nvml-library=",
                         RunfilePath("tests/fakes/fake_nvml/libnvidia-ml.so.1"))};
  }

  std::vector<std::pair<std::string, std::string>> NvmlEnv() const {
    return {{"FAKE_NVML_STATE", nvml_state_}};
  }

  void StartHardwareAgent() {
    cluster_.SetAgentFlags(HardwareFlags());
    cluster_.SetAgentEnv(NvmlEnv());
    cluster_.StartAgent("hw", "");
  }

  // The fake GPU's power limit in force, from the state file the fake
  // rewrites on every set call.
  std::string GpuLimit(int device) const {
    std::istringstream in(ReadAll(nvml_state_));
    std::string line;
    while (std::getline(in, line)) {
      if (!absl::StartsWith(line, absl::StrCat("device ", device, " "))) continue;
      const size_t pos = line.find(" limit_mw=");
      if (pos == std::string::npos) return "";
      const size_t end = line.find(' ', pos + 1);
      return line.substr(pos + 10, end == std::string::npos ? end : end - pos - 10);
    }
    return "";
  }

  std::string Setting(const char* relpath) const { return Trim(tree_.Contents(relpath)); }

  TestCluster cluster_;
  FixtureTree tree_;
  std::string nvml_state_;
};

TEST_F(HardwareTest, ProbeOnThisKindOfMachinePrintsTheEstimate) {
  CtlResult probe = cluster_.Run(
      "agent/joule-agent",
      {"--probe", "--probe-interval=0.1", "--nvml-library=/nonexistent/libnvidia-ml.so.1"});
  EXPECT_EQ(probe.exit_code, 0) << probe.out << probe.err;
  EXPECT_THAT(probe.out, HasSubstr("estimated  ok"));
  EXPECT_THAT(probe.out, HasSubstr("nvml       absent"));
  EXPECT_THAT(probe.out, HasSubstr("sample 3:"));
  EXPECT_THAT(probe.out, HasSubstr("[estimated]"));
}

TEST_F(HardwareTest, ProbeListsNvmlGpusAndRaplDomainsAndChangesNothing) {
  std::vector<std::string> args = HardwareFlags();
  args.insert(args.end(), {"--probe", "--probe-interval=0.1", "--node-name=hw",
                           absl::StrCat("--work-dir=", cluster_.dir(), "/probe-work")});
  const std::string state_before = ReadAll(nvml_state_);
  CtlResult probe = cluster_.Run("agent/joule-agent", args, NvmlEnv());
  EXPECT_EQ(probe.exit_code, 0) << probe.out << probe.err;
  EXPECT_THAT(probe.out, HasSubstr("nvml       ok"));
  EXPECT_THAT(probe.out, HasSubstr("rapl       ok"));
  EXPECT_THAT(probe.out, HasSubstr("cpufreq    ok"));
  EXPECT_THAT(probe.out, HasSubstr("GPU-aaaa0000"));
  EXPECT_THAT(probe.out, HasSubstr("GPU-bbbb1111"));
  EXPECT_THAT(probe.out, HasSubstr("limit 100-250 W (default 250 W)"));
  EXPECT_THAT(probe.out, HasSubstr("DRAM 0"));
  EXPECT_THAT(probe.out, HasSubstr("power    65.0 W"));
  EXPECT_THAT(probe.out, HasSubstr("[nvml]"));
  EXPECT_THAT(probe.out, HasSubstr("[rapl]"));
  // Nothing changed, nothing written.
  EXPECT_EQ(ReadAll(nvml_state_), state_before);
  EXPECT_EQ(Setting(kRaplLimit), "125000000");
  EXPECT_EQ(Setting(kMaxFreq), "3500000");
  EXPECT_EQ(ReadAll(cluster_.dir() + "/probe-work/caps.journal"), "");
}

TEST_F(HardwareTest, AGpuLostAtStartIsLeftOutAndTheOthersServe) {
  std::ofstream(nvml_state_, std::ios::app) << "lost 1\n";
  std::vector<std::string> args = HardwareFlags();
  args.insert(args.end(), {"--probe", "--probe-interval=0.1"});
  CtlResult probe = cluster_.Run("agent/joule-agent", args, NvmlEnv());
  EXPECT_EQ(probe.exit_code, 0) << probe.out << probe.err;
  EXPECT_THAT(probe.out, HasSubstr("nvml       degraded  1 GPUs usable; left out: GPU 1"));
  EXPECT_THAT(probe.out, HasSubstr("GPU-aaaa0000"));
  EXPECT_THAT(probe.out, ::testing::Not(HasSubstr("GPU-bbbb1111")));
}

TEST_F(HardwareTest, CapsAreRestoredAtAgentStopAndAfterACrash) {
  cluster_.StartScheduler();
  StartHardwareAgent();
  CtlResult nodes = cluster_.Ctl({"nodes"});
  EXPECT_THAT(nodes.out, HasSubstr("2xV100"));
  EXPECT_THAT(nodes.out, HasSubstr("nvml"));
  EXPECT_THAT(nodes.out, HasSubstr("rapl"));

  // Out of range is refused with the allowed range, and changes nothing.
  CtlResult bad = cluster_.Ctl({"cap", "hw", "--gpu", "0", "--watts", "400"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("[100, 250] W"));
  EXPECT_THAT(bad.err, HasSubstr("OUT_OF_RANGE"));
  EXPECT_EQ(GpuLimit(0), "250000");

  auto cap_everything = [&] {
    ASSERT_EQ(cluster_.Ctl({"cap", "hw", "--gpu", "0", "--watts", "150"}).exit_code, 0);
    ASSERT_EQ(cluster_.Ctl({"cap", "hw", "--cpu-package", "0", "--watts", "100",
                            "--max-mhz", "2000"})
                  .exit_code,
              0);
    ASSERT_TRUE(WaitFor([&] {
      return GpuLimit(0) == "150000" && Setting(kRaplLimit) == "100000000" &&
             Setting(kMaxFreq) == "2000000";
    })) << GpuLimit(0) << " " << Setting(kRaplLimit) << " " << Setting(kMaxFreq);
  };
  auto all_restored = [&] {
    return GpuLimit(0) == "250000" && Setting(kRaplLimit) == "125000000" &&
           Setting(kMaxFreq) == "3500000";
  };

  // 1. SIGTERM: the agent restores everything before it exits.
  cap_everything();
  cluster_.KillAgent("hw", SIGTERM);
  EXPECT_TRUE(all_restored()) << GpuLimit(0) << " " << Setting(kRaplLimit) << " "
                              << Setting(kMaxFreq);

  // 2. kill -9: the caps stay behind; the next agent finds and resets them.
  StartHardwareAgent();
  cap_everything();
  cluster_.KillAgent("hw", SIGKILL);
  EXPECT_EQ(GpuLimit(0), "150000");
  EXPECT_EQ(Setting(kRaplLimit), "100000000");
  StartHardwareAgent();
  EXPECT_TRUE(WaitFor(all_restored)) << GpuLimit(0) << " " << Setting(kRaplLimit) << " "
                                     << Setting(kMaxFreq);
}

TEST_F(HardwareTest, CapsAreRestoredWhenTheTaskEnds) {
  cluster_.StartScheduler();
  StartHardwareAgent();
  const std::string go = cluster_.dir() + "/go";
  CtlResult submit = cluster_.Ctl(
      {"submit", "-q", "--name", "capped", "--gpus", "1", "--", "/bin/sh", "-c",
       absl::StrCat("while [ ! -e ", go, " ]; do sleep 0.05; done")});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = Trim(submit.out);
  int gpu = -1;
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<v1::Job> job = cluster_.GetJob(id);
    if (!job.ok() || job->tasks_size() == 0 ||
        job->tasks(0).state() != v1::TASK_STATE_RUNNING) {
      return false;
    }
    gpu = job->tasks(0).gpu_indices(0);
    return true;
  }));
  // An operator caps the task's GPU (power and locked clocks) and the CPU.
  ASSERT_EQ(cluster_.Ctl({"cap", "hw", "--gpu", absl::StrCat(gpu), "--watts", "150",
                          "--min-mhz", "900", "--max-mhz", "1200"})
                .exit_code,
            0);
  ASSERT_EQ(cluster_.Ctl({"cap", "hw", "--cpu-package", "0", "--watts", "100",
                          "--max-mhz", "2000"})
                .exit_code,
            0);
  ASSERT_TRUE(WaitFor([&] {
    return GpuLimit(gpu) == "150000" && absl::StrContains(ReadAll(nvml_state_), "locked_sm=900-1200") &&
           Setting(kRaplLimit) == "100000000" && Setting(kMaxFreq) == "2000000";
  })) << ReadAll(nvml_state_);

  std::ofstream(go) << "";
  EXPECT_EQ(cluster_.Ctl({"watch", id}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    return GpuLimit(gpu) == "250000" && !absl::StrContains(ReadAll(nvml_state_), "locked_sm") &&
           Setting(kRaplLimit) == "125000000" && Setting(kMaxFreq) == "3500000";
  })) << ReadAll(nvml_state_) << Setting(kRaplLimit) << " " << Setting(kMaxFreq);
}

TEST_F(HardwareTest, BrokenSourcesDegradeVisiblyAndNeverCrash) {
  cluster_.StartScheduler();
  // GPU 1 cannot read its temperature; the RAPL counter is garbage.
  std::ofstream(nvml_state_, std::ios::app) << "fail nvmlDeviceGetTemperature 1 999\n";
  tree_.EnergyOf("intel-rapl:0", 0);
  tree_.File("sys/class/powercap/intel-rapl:0/energy_uj", "1180591620717411303424\n");
  StartHardwareAgent();
  v1::ListNodesResponse list;
  ASSERT_TRUE(WaitFor([&] {
    CtlResult nodes = cluster_.Ctl({"-o", "json", "nodes"});
    list.Clear();
    if (!google::protobuf::util::JsonStringToMessage(nodes.out, &list).ok() ||
        list.nodes_size() != 1) {
      return false;
    }
    int degraded = 0;
    for (const v1::SourceStatus& source : list.nodes(0).info().sources()) {
      degraded += source.state() == v1::SourceStatus::STATE_DEGRADED &&
                  (source.name() == "nvml" || source.name() == "rapl");
    }
    return degraded == 2 && list.nodes(0).last_sample().devices_size() > 0;
  })) << list.DebugString();
  const v1::Node& node = list.nodes(0);
  EXPECT_EQ(node.state(), v1::NODE_STATE_READY);
  for (const v1::SourceStatus& source : node.info().sources()) {
    if (source.name() == "nvml") {
      EXPECT_THAT(source.message(), HasSubstr("GPU 1"));
    }
    if (source.name() == "rapl") {
      EXPECT_THAT(source.message(), HasSubstr("energy_uj"));
    }
  }
  // The CPU falls back to the estimate; GPU 0 is still sampled.
  bool gpu0 = false, estimated = false;
  for (const v1::DeviceSample& sample : node.last_sample().devices()) {
    gpu0 |= sample.kind() == v1::DEVICE_KIND_GPU && sample.index() == 0 &&
            sample.power_w() == 65;
    estimated |= sample.source() == "estimated";
  }
  EXPECT_TRUE(gpu0);
  EXPECT_TRUE(estimated);
  CtlResult table = cluster_.Ctl({"nodes"});
  EXPECT_THAT(table.out, HasSubstr("degraded"));
}

}  // namespace
}  // namespace joule
