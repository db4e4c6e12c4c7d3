#include "common/periodic_timer.h"

#include <utility>

namespace joule {

PeriodicTimer::PeriodicTimer(const Clock* clock, absl::Duration period, std::function<void()> fn)
    : clock_(clock), period_(period), fn_(std::move(fn)), thread_([this] { Run(); }) {}

PeriodicTimer::~PeriodicTimer() { Stop(); }

void PeriodicTimer::Stop() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  if (thread_.joinable()) thread_.join();
}

void PeriodicTimer::Run() {
  absl::Time next = clock_->Now();
  while (!stopping_.HasBeenNotified()) {
    fn_();
    next += period_;
    const absl::Time now = clock_->Now();
    // Skip the ticks an overrun missed.
    if (next < now && period_ > absl::ZeroDuration()) {
      next += period_ * static_cast<int64_t>((now - next) / period_);
      if (next < now) next += period_;
    }
    if (clock_->WaitUntil(next, &stopping_)) return;
  }
}

}  // namespace joule
