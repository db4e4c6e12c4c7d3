#include "scheduler/power/node_power_manager.h"

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using State = NodePowerManager::State;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

NodePowerOptions Options(int keep_idle_gpus = 0) {
  NodePowerOptions options;
  options.suspend_after = absl::Minutes(10);
  options.resume_timeout = absl::Minutes(5);
  options.keep_idle_gpus = keep_idle_gpus;
  return options;
}

const std::map<std::string, int> kGpus = {{"a", 8}, {"b", 8}, {"c", 4}};

TEST(NodePowerManagerTest, OffByDefault) {
  NodePowerManager manager{NodePowerOptions()};
  EXPECT_FALSE(manager.enabled());
  manager.Registered("a", true, kT0);
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Hours(100), kGpus), IsEmpty());
}

TEST(NodePowerManagerTest, SuspendsOnlyNodesIdleLongEnough) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  manager.Registered("b", false, kT0);  // busy
  manager.Registered("c", true, kT0 + absl::Minutes(5));
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(9), kGpus), IsEmpty());
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(10), kGpus), ElementsAre("a"));
  EXPECT_EQ(manager.state("a"), State::kSuspending);
  // b never: it runs work. c after its own ten minutes.
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(14), kGpus), IsEmpty());
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(15), kGpus), ElementsAre("c"));
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Hours(5), kGpus), IsEmpty());
}

TEST(NodePowerManagerTest, TheIdleClockRestartsWhenATaskEnds) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  manager.SetIdle("a", false, kT0 + absl::Minutes(8));
  manager.SetIdle("a", true, kT0 + absl::Minutes(9));
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(15), kGpus), IsEmpty());
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(19), kGpus), ElementsAre("a"));
}

TEST(NodePowerManagerTest, ANodeHeldForWaitingWorkStaysAwake) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  // At minute 8 a job is placed on a and a suspended partner; it waits for
  // the partner, and a's idle clock restarts.
  manager.Hold("a", kT0 + absl::Minutes(8));
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(12), kGpus), IsEmpty());
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(18), kGpus), ElementsAre("a"));
  // Holding a node that is not awake changes nothing.
  manager.Hold("a", kT0 + absl::Minutes(19));
  EXPECT_EQ(manager.state("a"), State::kSuspending);
}

TEST(NodePowerManagerTest, KeepsIdleGpusAwake) {
  NodePowerManager manager(Options(/*keep_idle_gpus=*/8));
  manager.Registered("a", true, kT0);
  manager.Registered("b", true, kT0 + absl::Minutes(1));
  manager.Registered("c", true, kT0 + absl::Minutes(2));
  // 20 idle GPUs; suspending a (8) leaves 12, then b (8) leaves 4 < 8, so b
  // stays; c (4) leaves 8.
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Hours(1), kGpus), ElementsAre("a", "c"));
  EXPECT_EQ(manager.state("b"), State::kAwake);
}

TEST(NodePowerManagerTest, SuspendResumeCycle) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  ASSERT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(10), kGpus), ElementsAre("a"));
  EXPECT_FALSE(manager.Asleep("a"));
  // Not suspended yet: no resume.
  EXPECT_FALSE(manager.RequestResume("a", kT0 + absl::Minutes(11)));
  EXPECT_TRUE(manager.Disconnected("a"));
  EXPECT_EQ(manager.state("a"), State::kSuspended);
  EXPECT_TRUE(manager.Asleep("a"));
  EXPECT_TRUE(manager.RequestResume("a", kT0 + absl::Minutes(20)));
  EXPECT_FALSE(manager.RequestResume("a", kT0 + absl::Minutes(21)));  // already resuming
  EXPECT_EQ(manager.state("a"), State::kResuming);
  EXPECT_TRUE(manager.Asleep("a"));
  manager.Registered("a", true, kT0 + absl::Minutes(22));
  EXPECT_EQ(manager.state("a"), State::kAwake);
  EXPECT_FALSE(manager.Asleep("a"));
  // The idle clock starts at the registration.
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(31), kGpus), IsEmpty());
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Minutes(32), kGpus), ElementsAre("a"));
}

TEST(NodePowerManagerTest, ANodeThatDoesNotComeBackFails) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  manager.ChooseToSuspend(kT0 + absl::Minutes(10), kGpus);
  manager.Disconnected("a");
  ASSERT_TRUE(manager.RequestResume("a", kT0 + absl::Minutes(30)));
  EXPECT_THAT(manager.Expire(kT0 + absl::Minutes(34)).resume_failed, IsEmpty());
  NodePowerManager::Expired expired = manager.Expire(kT0 + absl::Minutes(35));
  EXPECT_THAT(expired.resume_failed, ElementsAre("a"));
  EXPECT_EQ(manager.state("a"), State::kFailed);
  EXPECT_FALSE(manager.Asleep("a"));
  EXPECT_EQ(manager.Counts()[State::kFailed], 1);
  // It registers after all: awake.
  manager.Registered("a", true, kT0 + absl::Hours(2));
  EXPECT_EQ(manager.state("a"), State::kAwake);
}

TEST(NodePowerManagerTest, ASuspendThatDoesNotTakeReturnsTheNode) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  manager.ChooseToSuspend(kT0 + absl::Minutes(10), kGpus);
  NodePowerManager::Expired expired = manager.Expire(kT0 + absl::Minutes(15));
  EXPECT_THAT(expired.suspend_failed, ElementsAre("a"));
  EXPECT_EQ(manager.state("a"), State::kAwake);
  // A disconnect now is not a suspend.
  EXPECT_FALSE(manager.Disconnected("a"));
}

TEST(NodePowerManagerTest, OnlyEligibleNodesAreSuspended) {
  NodePowerManager manager(Options());
  manager.Registered("a", true, kT0);
  manager.Registered("b", true, kT0);
  // b is down or holds a reservation: the scheduler leaves it out.
  EXPECT_THAT(manager.ChooseToSuspend(kT0 + absl::Hours(1), {{"a", 8}}), ElementsAre("a"));
  EXPECT_EQ(manager.state("b"), State::kAwake);
}

TEST(NodePowerManagerTest, ARestoredNodeIsSuspendedAndCanBeWoken) {
  NodePowerManager manager(Options());
  manager.RestoreSuspended("a", kT0);
  EXPECT_EQ(manager.state("a"), State::kSuspended);
  EXPECT_TRUE(manager.RequestResume("a", kT0 + absl::Minutes(1)));
}

TEST(NodePowerManagerTest, StateNames) {
  EXPECT_STREQ(NodePowerStateName(State::kSuspended), "suspended");
  EXPECT_STREQ(NodePowerStateName(State::kFailed), "failed");
  EXPECT_EQ(NodePowerManager(Options()).state("unknown"), State::kAwake);
}

}  // namespace
}  // namespace joule
