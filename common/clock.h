#ifndef JOULE_COMMON_CLOCK_H_
#define JOULE_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace joule {

// Source of time for everything that schedules or measures. The scheduler
// core and the agent take a Clock so that the simulator can drive them on a
// virtual clock; only RealClock reads the system clock.
//
// Timers: WaitUntil blocks the calling thread until the clock reaches a
// time, so that periodic work (PeriodicTimer in periodic_timer.h, the etcd
// lease keeper) runs on the injected clock rather than on sleeps of the
// real one.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Blocks until Now() >= `deadline`, or until `cancel` (may be null) is
  // notified. Returns true when cancelled.
  virtual bool WaitUntil(absl::Time deadline, const absl::Notification* cancel) const = 0;
};

// The system clock. Thread-safe, stateless.
class RealClock : public Clock {
 public:
  absl::Time Now() const override;
  bool WaitUntil(absl::Time deadline, const absl::Notification* cancel) const override;
  // A process-wide instance, for main() to inject.
  static RealClock* Get();
};

// A clock that moves only when told to; WaitUntil returns when Advance or
// Set moves it to the deadline. Thread-safe; guarded by mu_.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24 * 365 * 56))
      : now_(start) {}
  absl::Time Now() const override;
  bool WaitUntil(absl::Time deadline, const absl::Notification* cancel) const override;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_COMMON_CLOCK_H_
