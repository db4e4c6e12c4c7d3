#include "scheduler/brain/early_stop.h"

#include <optional>

#include "gtest/gtest.h"

namespace joule {
namespace {

v1::EarlyStop Rule(int patience, double min_delta, bool higher_is_better) {
  v1::EarlyStop rule;
  rule.set_patience(patience);
  rule.set_min_delta(min_delta);
  rule.set_higher_is_better(higher_is_better);
  return rule;
}

TEST(EarlyStopWatchTest, StopsAfterPatienceReportsWithoutImprovement) {
  EarlyStopWatch watch;
  const v1::EarlyStop rule = Rule(3, 0.01, /*higher_is_better=*/true);
  EXPECT_FALSE(watch.Report("t", rule, 0.50));
  EXPECT_FALSE(watch.Report("t", rule, 0.60));  // improved: the count restarts
  EXPECT_FALSE(watch.Report("t", rule, 0.605));  // within min_delta: stale 1
  EXPECT_FALSE(watch.Report("t", rule, 0.55));   // stale 2
  std::optional<EarlyStopVerdict> verdict = watch.Report("t", rule, 0.60);
  ASSERT_TRUE(verdict.has_value());
  EXPECT_DOUBLE_EQ(verdict->best, 0.60);
  EXPECT_EQ(verdict->stale, 3);
  // The task is forgotten once told to stop.
  EXPECT_EQ(watch.tasks(), 0u);
}

TEST(EarlyStopWatchTest, LowerIsBetterAndTasksAreApart) {
  EarlyStopWatch watch;
  const v1::EarlyStop rule = Rule(2, 0, /*higher_is_better=*/false);
  EXPECT_FALSE(watch.Report("a", rule, 1.0));
  EXPECT_FALSE(watch.Report("b", rule, 5.0));
  EXPECT_FALSE(watch.Report("a", rule, 0.9));  // lower: improved
  EXPECT_FALSE(watch.Report("a", rule, 0.95));
  EXPECT_FALSE(watch.Report("b", rule, 5.0));
  EXPECT_TRUE(watch.Report("a", rule, 0.9).has_value());  // equal is no improvement
  EXPECT_TRUE(watch.Report("b", rule, 6.0).has_value());
}

TEST(EarlyStopWatchTest, NoPatienceNeverStopsAndForgetResets) {
  EarlyStopWatch watch;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(watch.Report("t", Rule(0, 0, true), 1.0));
  EXPECT_EQ(watch.tasks(), 0u);
  const v1::EarlyStop rule = Rule(2, 0, true);
  EXPECT_FALSE(watch.Report("t", rule, 1.0));
  EXPECT_FALSE(watch.Report("t", rule, 0.5));
  watch.Forget("t");
  // A fresh start: the next report is the first.
  EXPECT_FALSE(watch.Report("t", rule, 0.5));
  EXPECT_FALSE(watch.Report("t", rule, 0.4));
  EXPECT_TRUE(watch.Report("t", rule, 0.4).has_value());
}

}  // namespace
}  // namespace joule
