// --check-config of joule-scheduler and joule-agent: the real binaries with
// real certificates made for the test. A sound configuration passes without
// starting anything; a bad one gets every problem named, not only the first.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ConfigCheckTest, SchedulerSoundConfigurationPassesWithoutStarting) {
  TestCluster cluster("config-check-scheduler");
  std::vector<std::string> args = {"--check-config", "--listen=0.0.0.0:7070",
                                   "--metrics-listen=0.0.0.0:7072",
                                   "--metrics-auth-file=" +
                                       cluster.WriteFile("metrics-users",
                                                         "prometheus sha256:" +
                                                             std::string(64, 'a') + "\n"),
                                   "--gpu-catalog=" + cluster.WriteFile(
                                                          "catalog.csv",
                                                          "X1,80,100,300,300,50,200,1800,1600,"
                                                          "87\n")};
  for (const std::string& flag : cluster.SchedulerSecurityFlags()) args.push_back(flag);
  CtlResult result = cluster.Run("scheduler/joule-scheduler", args);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("joule-scheduler: configuration OK"));
  // Nothing was bound or served.
  EXPECT_THAT(result.out, AllOf(Not(HasSubstr("listening on")), Not(HasSubstr("metrics on"))));
}

TEST(ConfigCheckTest, SchedulerReportsEveryProblem) {
  TestCluster cluster("config-check-scheduler-bad");
  CtlResult result = cluster.Run(
      "scheduler/joule-scheduler",
      {"--check-config", "--listen=0.0.0.0:70700", "--tls-cert=" + cluster.dir() + "/missing.pem",
       "--tls-key=" + cluster.dir() + "/missing.key", "--tls-ca=" + cluster.pki().ca(),
       "--carbon-config=" + cluster.WriteFile("carbon.yaml", "regions: [\n"),
       "--store=etcds://etcd-0:2379", "--etcd-cert=" + cluster.pki().ca(),
       "--metrics-listen=0.0.0.0:7072"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--listen \"0.0.0.0:70700\""));
  EXPECT_THAT(result.err, HasSubstr("--tls-cert"));
  EXPECT_THAT(result.err, HasSubstr("--carbon-config"));
  EXPECT_THAT(result.err, HasSubstr("--etcd-cert and --etcd-key go together"));
  EXPECT_THAT(result.err, HasSubstr("--metrics-auth-file"));
  EXPECT_THAT(result.err, HasSubstr("5 configuration problems"));
}

// A placement profile file is checked whole: a misspelled plugin is named
// with its file, line and field, and nothing starts.
TEST(ConfigCheckTest, SchedulerNamesABadPlacementProfile) {
  TestCluster cluster("config-check-placement");
  const std::string config = cluster.WriteFile(
      "placement.yaml",
      "profiles:\n  - name: packing\n    filters: [GpuModel, NodeReady, FreeResources]\n"
      "    scorers:\n      - {name: Consolidaton, weight: 1}\n");
  CtlResult result = cluster.Run(
      "scheduler/joule-scheduler",
      {"--check-config", "--listen=127.0.0.1:0", "--insecure", "--placement-config=" + config});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--placement-config"));
  EXPECT_THAT(result.err, HasSubstr("placement.yaml line 5: profiles.packing.scorers[0].name: "
                                    "unknown score plugin \"Consolidaton\""));

  const std::string good = cluster.WriteFile(
      "placement-good.yaml",
      "default_profile: packing\nprofiles:\n  - name: packing\n"
      "    filters: [GpuModel, NodeReady, FreeResources]\n"
      "    scorers:\n      - {name: Consolidation, weight: 1}\n");
  CtlResult sound = cluster.Run(
      "scheduler/joule-scheduler",
      {"--check-config", "--listen=127.0.0.1:0", "--insecure", "--placement-config=" + good});
  EXPECT_EQ(sound.exit_code, 0) << sound.err;
  EXPECT_THAT(sound.err, HasSubstr("default packing"));
}

TEST(ConfigCheckTest, AgentSoundConfigurationPassesAndBadOneIsNamed) {
  TestCluster cluster("config-check-agent");
  absl::StatusOr<CertFiles> node = cluster.pki().Node("gpu-1");
  ASSERT_TRUE(node.ok()) << node.status();
  const std::string users = cluster.WriteFile("task-users", "alice 1000 1000\n");
  CtlResult good = cluster.Run(
      "agent/joule-agent",
      {"--check-config", "--scheduler=joule-scheduler.joule.svc:7070,10.0.0.2:7070",
       "--node-name=gpu-1", "--tls-ca=" + cluster.pki().ca(), "--tls-cert=" + node->cert,
       "--tls-key=" + node->key, "--memory=16Gi", "--label=zone=a", "--task-users=" + users});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_THAT(good.out, HasSubstr("joule-agent: configuration OK"));

  CtlResult bad = cluster.Run(
      "agent/joule-agent",
      {"--check-config", "--scheduler=sched", "--node-name=GPU_1", "--tls-ca=" + cluster.pki().ca(),
       "--tls-cert=" + node->cert, "--memory=lots", "--label=nokey",
       "--task-users=" + cluster.dir() + "/no-such-file"});
  EXPECT_EQ(bad.exit_code, 2);
  for (const char* problem : {"--scheduler", "--node-name", "--tls-cert and --tls-key",
                              "--memory", "--label", "--task-users", "6 configuration problems"}) {
    EXPECT_THAT(bad.err, HasSubstr(problem));
  }
}

}  // namespace
}  // namespace joule
