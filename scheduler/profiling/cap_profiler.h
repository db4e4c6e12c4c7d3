#ifndef JOULE_SCHEDULER_PROFILING_CAP_PROFILER_H_
#define JOULE_SCHEDULER_PROFILING_CAP_PROFILER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "scheduler/profiling/cap_choice.h"

namespace joule {

struct ProfilerOptions {
  // The device's power-limit range, W. Profiling starts at max_cap_w.
  double min_cap_w = 100;
  double max_cap_w = 250;
  // Distance between profiled caps, W. The last cap is min_cap_w even when
  // max - min is not a multiple of the step.
  double step_w = 25;
  // Discarded after the task starts and after each cap change, while clocks,
  // power and the input pipeline settle.
  absl::Duration warmup = absl::Seconds(5);
  // Measured per cap once warmup is over.
  absl::Duration window = absl::Seconds(10);
  // A window ends only once the task has done at least this much work in it
  // (so that slow tasks with coarse progress counters are measured over
  // enough steps)...
  double min_work_per_window = 1;
  // ...or, at the latest, after this long (>= window).
  absl::Duration max_window = absl::Seconds(60);
  // Early exit: stop stepping down once a cap's throughput falls below
  // 1 / max_explore_slowdown of the throughput at max_cap_w (2.0: below
  // half). No sensible objective picks anything slower, and every slower cap
  // would cost the task time to measure. Infinity: always profile every cap.
  double max_explore_slowdown = 2.0;
};

// More caps than this would profile for hours; a step that small is a typo.
inline constexpr size_t kMaxProfiledCaps = 1000;

// INVALID_ARGUMENT naming the field unless: 0 < min_cap_w <= max_cap_w (both
// finite), step_w finite and > 0, warmup >= 0, 0 < window <= max_window (both
// finite), min_work_per_window finite and >= 0, max_explore_slowdown >= 1
// (infinity allowed), and at most kMaxProfiledCaps caps to visit.
absl::Status ValidateProfilerOptions(const ProfilerOptions& options);

// Just-in-time power-cap profiling of one running task, after Zeus's JIT
// power-limit optimizer (Jae-Won Chung et al., "Zeus: Understanding and
// Optimizing GPU Energy Consumption of DNN Training", NSDI 2023): the first
// minutes of a job run at a sequence of caps while throughput and power are
// measured, then the job holds the cap ChooseCap picks for its objective.
//
// Algorithm:
//  1. Caps are visited from max_cap_w down to min_cap_w in step_w steps.
//     cap_w() is the cap the caller should have applied; it changes only
//     inside Observe().
//  2. The caller feeds cumulative, monotonic counters of the task: work done
//     (samples) and energy of the task's devices (J). The first observation
//     at which the task has done work, and each observation at which the cap
//     changes, starts a warmup: the task's start-up (an interpreter
//     importing its libraries, data loading) is not the first cap's
//     throughput. A task that does no work within warmup + max_window of the
//     first observation fails profiling as in 4.
//  3. The first observation at least `warmup` after that start begins the
//     measurement window. The window ends at the first observation at least
//     `window` later with at least min_work_per_window work done in it, or at
//     the first one at least `max_window` later. The point recorded is
//     throughput = Δwork / Δt and power = Δenergy / Δt over the window.
//  4. A window that reaches max_window with no work at all records no point:
//     at max_cap_w profiling fails (status() says why; the caller keeps its
//     default cap); at a lower cap the task is taken to be too slow there and
//     profiling ends (as in 5). A window whose energy counter never advanced
//     fails profiling too (the points so far are kept).
//  5. Profiling ends after min_cap_w, or early once a cap's throughput is
//     below 1 / max_explore_slowdown of the first cap's.
//
// Observations that go backwards (time, work or energy below the previous
// accepted observation), repeat the previous time, or carry non-finite
// counters are ignored and counted; a counter reset (task restart) therefore
// needs a new profiler. Deterministic: no clock reads, no randomness.
// Not thread-safe; owned by the scheduler loop.
class CapProfiler {
 public:
  // `options` must be valid (ValidateProfilerOptions); invalid options abort
  // the process. Use Create for options that come from configuration.
  explicit CapProfiler(ProfilerOptions options);

  static absl::StatusOr<CapProfiler> Create(ProfilerOptions options);

  // Feeds the task's cumulative counters at `now` (see the class comment).
  // Does nothing once done().
  void Observe(absl::Time now, double work_done, double energy_j);

  // The cap the caller should apply now. max_cap_w before the first
  // observation and after profiling ends (the caller then applies the cap
  // ChooseCap returns).
  double cap_w() const;

  bool done() const { return phase_ == Phase::kDone; }

  // OK while profiling and after it ends normally; UNAVAILABLE when a
  // window could not be measured (no progress at max_cap_w, or no energy
  // counted) within max_window.
  const absl::Status& status() const { return status_; }

  // Why profiling ended, for `joulectl explain`; empty while profiling.
  const std::string& end_reason() const { return end_reason_; }

  // One point per measured cap, highest cap first. Complete once done().
  const std::vector<CapPoint>& profile() const { return profile_; }

  // Observations ignored as going backwards, repeated or non-finite.
  size_t ignored_observations() const { return ignored_observations_; }

  const ProfilerOptions& options() const { return options_; }

 private:
  enum class Phase { kNotStarted, kWarmup, kMeasuring, kDone };

  struct Mark {
    absl::Time time;
    double work = 0;
    double energy_j = 0;
  };

  // The cap visited at position `index` (0 = max_cap_w).
  double CapAt(size_t index) const;
  size_t CapCount() const;
  // Records the window [phase_start_, end] and moves to the next cap or
  // ends profiling.
  void FinishWindow(const Mark& end);
  // Starts the warmup (or, with no warmup, the window) of the current cap.
  void StartCap(const Mark& at);
  void End(std::string reason);

  ProfilerOptions options_;
  Phase phase_ = Phase::kNotStarted;
  size_t cap_index_ = 0;
  // The last accepted observation.
  Mark last_;
  // The first accepted observation: the task's start-up lasts until its
  // work counter moves past this one's.
  Mark first_;
  // Start of the current warmup or window.
  Mark phase_start_;
  std::vector<CapPoint> profile_;
  absl::Status status_;
  std::string end_reason_;
  size_t ignored_observations_ = 0;
};

// A finished profile as text, for the scheduler's store (one value per (job
// class, device model)) so that a recurring job class skips profiling:
//   joule-cap-profile v1
//   <cap_w> <throughput> <power_w>     (one line per point, %.17g: exact)
std::string SerializeProfile(const std::vector<CapPoint>& profile);

// Parses SerializeProfile's output. DATA_LOSS for anything else: missing or
// unknown header, a malformed line, or a point ValidateProfile refuses.
absl::StatusOr<std::vector<CapPoint>> ParseProfile(absl::string_view text);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PROFILING_CAP_PROFILER_H_
