#include "common/periodic_timer.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

// Waits (in real time, at most 10 s) until `runs` reaches `n`.
bool AwaitRuns(const std::atomic<int>& runs, int n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (runs.load() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  return runs.load() >= n;
}

TEST(PeriodicTimerTest, RunsOnTheFakeClocksTime) {
  FakeClock clock;
  std::atomic<int> runs{0};
  PeriodicTimer timer(&clock, absl::Seconds(10), [&runs] { ++runs; });
  ASSERT_TRUE(AwaitRuns(runs, 1));  // at once
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(runs.load(), 1);  // real time passing does not count
  clock.Advance(absl::Seconds(9));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(runs.load(), 1);
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(AwaitRuns(runs, 2));
  // A jump of several periods runs once, not once per missed period.
  clock.Advance(absl::Seconds(35));
  EXPECT_TRUE(AwaitRuns(runs, 3));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(runs.load(), 3);
}

TEST(PeriodicTimerTest, StopEndsAWaitAtOnce) {
  FakeClock clock;
  std::atomic<int> runs{0};
  PeriodicTimer timer(&clock, absl::Hours(1), [&runs] { ++runs; });
  ASSERT_TRUE(AwaitRuns(runs, 1));
  const absl::Time before = absl::Now();
  timer.Stop();
  EXPECT_LT(absl::Now() - before, absl::Seconds(1));
  timer.Stop();  // idempotent
  EXPECT_EQ(runs.load(), 1);
}

TEST(PeriodicTimerTest, RunsOnTheRealClock) {
  std::atomic<int> runs{0};
  PeriodicTimer timer(RealClock::Get(), absl::Milliseconds(5), [&runs] { ++runs; });
  EXPECT_TRUE(AwaitRuns(runs, 5));
}

TEST(ClockTest, FakeClockWaitUntilReturnsWhenAdvancedOrCancelled) {
  FakeClock clock;
  absl::Notification cancel;
  const absl::Time deadline = clock.Now() + absl::Seconds(5);
  EXPECT_FALSE(clock.WaitUntil(clock.Now(), nullptr));  // already there
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    EXPECT_FALSE(clock.WaitUntil(deadline, &cancel));
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_FALSE(done.load());
  clock.Advance(absl::Seconds(5));
  waiter.join();
  EXPECT_TRUE(done.load());
  std::thread cancelled([&] { EXPECT_TRUE(clock.WaitUntil(deadline + absl::Hours(1), &cancel)); });
  cancel.Notify();
  cancelled.join();
}

}  // namespace
}  // namespace joule
