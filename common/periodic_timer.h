#ifndef JOULE_COMMON_PERIODIC_TIMER_H_
#define JOULE_COMMON_PERIODIC_TIMER_H_

#include <functional>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace joule {

// Runs `fn` every `period` of `clock`'s time on a thread of its own: first
// at once, then at start + k x period (a run that overruns skips the ticks
// it missed rather than running them back to back). On a FakeClock it runs
// as the test advances the clock.
//
// Threading: `fn` runs on the timer's own thread. Stop (or the destructor)
// ends that thread after the run in progress; call it from one thread only,
// never from `fn`.
class PeriodicTimer {
 public:
  PeriodicTimer(const Clock* clock, absl::Duration period, std::function<void()> fn);
  ~PeriodicTimer();

  PeriodicTimer(const PeriodicTimer&) = delete;
  PeriodicTimer& operator=(const PeriodicTimer&) = delete;

  // Stops the runs and joins the thread. Idempotent.
  void Stop();

 private:
  void Run();

  const Clock* const clock_;
  const absl::Duration period_;
  const std::function<void()> fn_;
  absl::Notification stopping_;
  std::thread thread_;
};

}  // namespace joule

#endif  // JOULE_COMMON_PERIODIC_TIMER_H_
