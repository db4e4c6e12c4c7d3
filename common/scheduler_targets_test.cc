#include "common/scheduler_targets.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using Next = SchedulerTargets::Next;

TEST(SchedulerTargetsTest, SplitsTrimsAndDropsRepeats) {
  EXPECT_THAT(SchedulerTargets::SplitAddressList("a:1"), ElementsAre("a:1"));
  EXPECT_THAT(SchedulerTargets::SplitAddressList(" a:1 , b:2,,a:1, "),
              ElementsAre("a:1", "b:2"));
  EXPECT_TRUE(SchedulerTargets::SplitAddressList(" , ").empty());
  EXPECT_TRUE(SchedulerTargets::SplitAddressList("").empty());
}

// One step: what the call at current() did, and what must follow.
struct Step {
  std::string called;  // expected current() before the call
  bool leader = false;  // the call reached the leader
  std::string hint;     // else: the refusal's hint
  Next next = Next::kRetryNow;
};

struct Case {
  std::string name;
  std::vector<std::string> addresses;
  std::vector<Step> steps;
};

class SchedulerTargetsCaseTest : public ::testing::TestWithParam<Case> {};

TEST_P(SchedulerTargetsCaseTest, FollowsHintsAndRotates) {
  SchedulerTargets targets(GetParam().addresses);
  for (size_t i = 0; i < GetParam().steps.size(); ++i) {
    const Step& step = GetParam().steps[i];
    ASSERT_EQ(targets.current(), step.called) << "step " << i;
    if (step.leader) {
      targets.OnLeaderReached();
    } else {
      EXPECT_EQ(targets.OnFailure(step.hint), step.next) << "step " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SchedulerTargetsCaseTest,
    ::testing::Values(
        Case{"SingleAddressBacksOffEveryTime",
             {"a:1"},
             {{"a:1", false, "", Next::kBackOff},
              {"a:1", false, "", Next::kBackOff},
              {"a:1", true}}},
        Case{"StandbyHintsLeaderInList",
             {"s:1", "l:2"},
             {{"s:1", false, "l:2", Next::kRetryNow}, {"l:2", true}, {"l:2", true}}},
        Case{"HintOutsideTheListIsFollowedAndKept",
             {"s:1"},
             {{"s:1", false, "x:9", Next::kRetryNow}, {"x:9", true}, {"x:9", true}}},
        Case{"DeadFirstAddressCostsNoBackOff",
             {"d:1", "l:2"},
             {{"d:1", false, "", Next::kRetryNow}, {"l:2", true}}},
        Case{"RoundOfMissesBacksOffThenStartsOver",
             {"a:1", "b:2", "c:3"},
             {{"a:1", false, "", Next::kRetryNow},
              {"b:2", false, "", Next::kRetryNow},
              {"c:3", false, "", Next::kBackOff},
              {"a:1", false, "", Next::kRetryNow}}},
        Case{"FailedRedirectMovesPastTheHintingStandby",
             {"s:1", "t:2", "u:3"},
             {{"s:1", false, "x:9", Next::kRetryNow},
              {"x:9", false, "", Next::kRetryNow},
              {"t:2", false, "", Next::kRetryNow},
              {"u:3", false, "", Next::kBackOff}}},
        Case{"BouncingHintsBackOff",
             {"a:1", "b:2"},
             {{"a:1", false, "b:2", Next::kRetryNow},
              {"b:2", false, "a:1", Next::kRetryNow},
              {"a:1", false, "b:2", Next::kBackOff},
              {"b:2", false, "a:1", Next::kRetryNow}}},
        Case{"SelfHintCountsAsNoHint",
             {"a:1", "b:2"},
             {{"a:1", false, "a:1", Next::kRetryNow}, {"b:2", true}}},
        Case{"LeaderLostThenFoundAgain",
             {"a:1", "b:2"},
             {{"a:1", true},
              {"a:1", false, "", Next::kRetryNow},
              {"b:2", false, "a:1", Next::kRetryNow},
              {"a:1", true}}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace joule
