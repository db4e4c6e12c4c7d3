#include "scheduler/profiling/cap_profiler.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "scheduler/profiling/cap_choice.h"

namespace joule {
namespace {

constexpr absl::string_view kProfileHeader = "joule-cap-profile v1";

// Slack when deciding whether (max - min) is a whole number of steps, so that
// 250 - 100 in 25 W steps is 6 steps and not 5.999... plus a stray 100 W.
constexpr double kStepSlack = 1e-9;

// Number of whole steps from max_cap_w down before min_cap_w is reached, and
// whether a partial step to min_cap_w follows. As a double: options are
// validated with it before anything is cast.
double WholeSteps(const ProfilerOptions& o) {
  return std::floor((o.max_cap_w - o.min_cap_w) / o.step_w + kStepSlack);
}
bool PartialStep(const ProfilerOptions& o) {
  return (o.max_cap_w - o.min_cap_w) / o.step_w - WholeSteps(o) > kStepSlack;
}
double CapCountOf(const ProfilerOptions& o) {
  return WholeSteps(o) + 1 + (PartialStep(o) ? 1 : 0);
}

bool IsFinite(absl::Duration d) {
  return d != absl::InfiniteDuration() && d != -absl::InfiniteDuration();
}

std::string Watts(double w) { return absl::StrFormat("%g W", w); }

}  // namespace

absl::Status ValidateProfilerOptions(const ProfilerOptions& o) {
  if (!std::isfinite(o.min_cap_w) || !std::isfinite(o.max_cap_w) ||
      !(o.min_cap_w > 0) || !(o.min_cap_w <= o.max_cap_w)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "min_cap_w and max_cap_w must be finite with 0 < min_cap_w <= "
        "max_cap_w, got [%g, %g]",
        o.min_cap_w, o.max_cap_w));
  }
  if (!std::isfinite(o.step_w) || !(o.step_w > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "step_w must be finite and positive, got %g", o.step_w));
  }
  if (CapCountOf(o) > static_cast<double>(kMaxProfiledCaps)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "step_w %g over [%g, %g] W gives %.0f caps, more than %d", o.step_w,
        o.min_cap_w, o.max_cap_w, CapCountOf(o), kMaxProfiledCaps));
  }
  if (!IsFinite(o.warmup) || o.warmup < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup must be finite and non-negative, got ",
                     absl::FormatDuration(o.warmup)));
  }
  if (!IsFinite(o.window) || !IsFinite(o.max_window) ||
      o.window <= absl::ZeroDuration() || o.max_window < o.window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "window and max_window must be finite with 0 < window <= max_window, "
        "got ",
        absl::FormatDuration(o.window), " and ",
        absl::FormatDuration(o.max_window)));
  }
  if (!std::isfinite(o.min_work_per_window) || o.min_work_per_window < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "min_work_per_window must be finite and non-negative, got %g",
        o.min_work_per_window));
  }
  if (!(o.max_explore_slowdown >= 1.0)) {  // Also refuses NaN.
    return absl::InvalidArgumentError(absl::StrFormat(
        "max_explore_slowdown must be >= 1 (or infinity), got %g",
        o.max_explore_slowdown));
  }
  return absl::OkStatus();
}

CapProfiler::CapProfiler(ProfilerOptions options)
    : options_(std::move(options)) {
  if (absl::Status status = ValidateProfilerOptions(options_); !status.ok()) {
    // A programming error: configuration goes through Create.
    std::fprintf(stderr, "CapProfiler: invalid options: %s\n",
                 status.ToString().c_str());
    std::abort();
  }
}

absl::StatusOr<CapProfiler> CapProfiler::Create(ProfilerOptions options) {
  if (absl::Status status = ValidateProfilerOptions(options); !status.ok()) {
    return status;
  }
  return CapProfiler(std::move(options));
}

size_t CapProfiler::CapCount() const {
  return static_cast<size_t>(CapCountOf(options_));
}

double CapProfiler::CapAt(size_t index) const {
  if (index + 1 >= CapCount()) return options_.min_cap_w;
  return options_.max_cap_w - static_cast<double>(index) * options_.step_w;
}

double CapProfiler::cap_w() const {
  if (phase_ == Phase::kNotStarted || phase_ == Phase::kDone) {
    return options_.max_cap_w;
  }
  return CapAt(cap_index_);
}

void CapProfiler::Observe(absl::Time now, double work_done, double energy_j) {
  if (phase_ == Phase::kDone) return;
  const bool finite = std::isfinite(work_done) && std::isfinite(energy_j) &&
                      now != absl::InfiniteFuture() &&
                      now != absl::InfinitePast();
  const bool backwards = phase_ != Phase::kNotStarted &&
                         (now <= last_.time || work_done < last_.work ||
                          energy_j < last_.energy_j);
  if (!finite || backwards) {
    ++ignored_observations_;
    return;
  }
  last_ = Mark{now, work_done, energy_j};
  switch (phase_) {
    case Phase::kNotStarted:
      first_ = last_;
      StartCap(last_);
      return;
    case Phase::kWarmup:
      if (cap_index_ == 0 && work_done <= first_.work) {
        // Still starting up: the warmup begins with the first work.
        if (now - first_.time >= options_.warmup + options_.max_window) {
          phase_start_ = first_;
          FinishWindow(last_);  // No work: fails profiling.
        } else {
          phase_start_ = last_;
        }
        return;
      }
      if (now - phase_start_.time >= options_.warmup) {
        phase_ = Phase::kMeasuring;
        phase_start_ = last_;
      }
      return;
    case Phase::kMeasuring: {
      const absl::Duration elapsed = now - phase_start_.time;
      const bool enough_work =
          work_done - phase_start_.work >= options_.min_work_per_window &&
          work_done > phase_start_.work && energy_j > phase_start_.energy_j;
      if ((elapsed >= options_.window && enough_work) ||
          elapsed >= options_.max_window) {
        FinishWindow(last_);
      }
      return;
    }
    case Phase::kDone:
      return;
  }
}

void CapProfiler::StartCap(const Mark& at) {
  phase_start_ = at;
  phase_ = options_.warmup > absl::ZeroDuration() ? Phase::kWarmup
                                                  : Phase::kMeasuring;
}

void CapProfiler::End(std::string reason) {
  phase_ = Phase::kDone;
  end_reason_ = std::move(reason);
}

void CapProfiler::FinishWindow(const Mark& end) {
  const double cap = CapAt(cap_index_);
  const double seconds = absl::ToDoubleSeconds(end.time - phase_start_.time);
  const double work = end.work - phase_start_.work;
  const double energy_j = end.energy_j - phase_start_.energy_j;
  if (work <= 0) {
    if (cap_index_ == 0) {
      status_ = absl::UnavailableError(absl::StrFormat(
          "the task made no progress at %s in %s; cap profiling abandoned",
          Watts(cap), absl::FormatDuration(end.time - phase_start_.time)));
      End(status_.ToString());
    } else {
      End(absl::StrFormat(
          "stopped at %s: no progress in %s, too slow to be worth a cap",
          Watts(cap), absl::FormatDuration(end.time - phase_start_.time)));
    }
    return;
  }
  if (energy_j <= 0) {
    status_ = absl::UnavailableError(absl::StrFormat(
        "the energy counter did not advance at %s in %s; cap profiling "
        "abandoned",
        Watts(cap), absl::FormatDuration(end.time - phase_start_.time)));
    End(status_.ToString());
    return;
  }
  profile_.push_back(CapPoint{cap, work / seconds, energy_j / seconds});
  const double first_throughput = profile_.front().throughput;
  const double throughput = profile_.back().throughput;
  if (cap_index_ > 0 &&
      throughput < first_throughput / options_.max_explore_slowdown) {
    End(absl::StrFormat(
        "stopped early at %s: throughput %.0f%% of %s's, below the 1/%g "
        "exploration limit",
        Watts(cap), 100.0 * throughput / first_throughput,
        Watts(profile_.front().cap_w), options_.max_explore_slowdown));
    return;
  }
  if (cap_index_ + 1 >= CapCount()) {
    End(absl::StrFormat("profiled %d caps from %s to %s", profile_.size(),
                        Watts(profile_.front().cap_w), Watts(cap)));
    return;
  }
  ++cap_index_;
  StartCap(end);
}

std::string SerializeProfile(const std::vector<CapPoint>& profile) {
  std::string out = absl::StrCat(kProfileHeader, "\n");
  for (const CapPoint& p : profile) {
    absl::StrAppendFormat(&out, "%.17g %.17g %.17g\n", p.cap_w, p.throughput,
                          p.power_w);
  }
  return out;
}

absl::StatusOr<std::vector<CapPoint>> ParseProfile(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  // Serialized text ends with a newline, which leaves one empty last piece.
  if (lines.size() < 2 || !lines.back().empty()) {
    return absl::DataLossError(
        "cap profile: truncated (no header line or no final newline)");
  }
  lines.pop_back();
  if (lines.front() != kProfileHeader) {
    return absl::DataLossError(
        absl::StrCat("cap profile: expected header \"", kProfileHeader, "\""));
  }
  std::vector<CapPoint> profile;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<absl::string_view> fields = absl::StrSplit(lines[i], ' ');
    double values[3];
    bool ok = fields.size() == 3;
    for (size_t f = 0; ok && f < 3; ++f) {
      // SimpleAtod would skip whitespace and accept "nan"; %.17g writes
      // neither, so anything else is damage.
      ok = !fields[f].empty() &&
           fields[f].find_first_not_of("0123456789+-.eE") ==
               absl::string_view::npos &&
           absl::SimpleAtod(fields[f], &values[f]);
    }
    if (!ok) {
      return absl::DataLossError(absl::StrFormat(
          "cap profile line %d: expected \"<cap_w> <throughput> <power_w>\"",
          i + 1));
    }
    profile.push_back(CapPoint{values[0], values[1], values[2]});
  }
  if (absl::Status status = ValidateProfile(profile); !status.ok()) {
    return absl::DataLossError(absl::StrCat("cap profile: ", status.message()));
  }
  return profile;
}

}  // namespace joule
