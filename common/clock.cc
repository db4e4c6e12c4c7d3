#include "common/clock.h"

namespace joule {

absl::Time RealClock::Now() const { return absl::Now(); }

bool RealClock::WaitUntil(absl::Time deadline, const absl::Notification* cancel) const {
  if (cancel != nullptr) return cancel->WaitForNotificationWithDeadline(deadline);
  absl::SleepFor(deadline - absl::Now());
  return false;
}

RealClock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool FakeClock::WaitUntil(absl::Time deadline, const absl::Notification* cancel) const {
  // A notification cannot wake a mutex condition, so a cancel is noticed
  // within kPoll of real time.
  constexpr absl::Duration kPoll = absl::Milliseconds(5);
  absl::MutexLock lock(&mu_);
  auto reached = [this, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return now_ >= deadline;
  };
  while (!reached()) {
    if (cancel != nullptr && cancel->HasBeenNotified()) return true;
    mu_.AwaitWithTimeout(absl::Condition(&reached), kPoll);
  }
  return cancel != nullptr && cancel->HasBeenNotified();
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace joule
