#include "scheduler/profiling/cap_choice.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace joule {
namespace {

// Relative tolerance for ties and for constraint checks (see the header).
constexpr double kRelTolerance = 1e-9;

// Range of google.protobuf.Timestamp (0001-01-01 to 9999-12-31).
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

double EnergyPerUnit(const CapPoint& p) { return p.power_w / p.throughput; }
double TimePerUnit(const CapPoint& p) { return 1.0 / p.throughput; }

bool NearlyEqual(double a, double b) {
  return std::fabs(a - b) <=
         kRelTolerance * std::max(std::fabs(a), std::fabs(b));
}

// a <= b, allowing a relative slack of kRelTolerance.
bool AtMost(double a, double b) { return a <= b || NearlyEqual(a, b); }

// Whether a point with `cost` at `cap_w` beats the current best; equal costs
// go to the higher (faster) cap.
bool Better(double cost, double cap_w, double best_cost, double best_cap_w) {
  if (NearlyEqual(cost, best_cost)) return cap_w > best_cap_w;
  return cost < best_cost;
}

std::string Watts(double w) { return absl::StrFormat("%g W", w); }

// Whole seconds, rounded up, so that "needs" and "misses by" never understate.
std::string CeilSeconds(absl::Duration d) {
  return absl::FormatDuration(absl::Ceil(d, absl::Seconds(1)));
}
std::string FloorSeconds(absl::Duration d) {
  return absl::FormatDuration(absl::Floor(d, absl::Seconds(1)));
}

// "18% less energy per sample than 250 W at 1.07x the time".
std::string VersusFastest(const CapPoint& chosen, const CapPoint& fastest) {
  const double ratio = EnergyPerUnit(chosen) / EnergyPerUnit(fastest);
  const double slowdown = TimePerUnit(chosen) / TimePerUnit(fastest);
  const double percent = std::fabs(1.0 - ratio) * 100.0;
  return absl::StrFormat(
      "%.0f%% %s energy per sample than %s at %.2fx the time", percent,
      ratio <= 1.0 ? "less" : "more", Watts(fastest.cap_w), slowdown);
}

// Index of the fastest point; equal throughputs go to the higher cap.
size_t FastestIndex(const std::vector<CapPoint>& profile) {
  size_t best = 0;
  for (size_t i = 1; i < profile.size(); ++i) {
    // Cost = time per unit: lower is better.
    if (Better(TimePerUnit(profile[i]), profile[i].cap_w,
               TimePerUnit(profile[best]), profile[best].cap_w)) {
      best = i;
    }
  }
  return best;
}

CapDecision Decide(const CapPoint& p, double remaining_work) {
  CapDecision decision;
  decision.cap_w = p.cap_w;
  decision.predicted_energy_j = remaining_work * EnergyPerUnit(p);
  decision.predicted_seconds = remaining_work * TimePerUnit(p);
  return decision;
}

CapDecision ChooseMaxSlowdown(const std::vector<CapPoint>& profile,
                              size_t fastest, double max_slowdown,
                              double remaining_work) {
  const double time_limit = max_slowdown * TimePerUnit(profile[fastest]);
  size_t best = fastest;
  for (size_t i = 0; i < profile.size(); ++i) {
    if (!AtMost(TimePerUnit(profile[i]), time_limit)) continue;
    if (Better(EnergyPerUnit(profile[i]), profile[i].cap_w,
               EnergyPerUnit(profile[best]), profile[best].cap_w)) {
      best = i;
    }
  }
  CapDecision decision = Decide(profile[best], remaining_work);
  if (best != fastest) {
    decision.reason = absl::StrFormat(
        "%s: %s (limit %.2fx)", Watts(profile[best].cap_w),
        VersusFastest(profile[best], profile[fastest]), max_slowdown);
  } else if (profile.size() == 1) {
    decision.reason = absl::StrFormat("%s: the only profiled cap",
                                      Watts(profile[best].cap_w));
  } else {
    decision.reason = absl::StrFormat(
        "%s: the fastest cap; no other cap within %.2fx its time uses less "
        "energy per sample",
        Watts(profile[best].cap_w), max_slowdown);
  }
  return decision;
}

CapDecision ChooseZeus(const std::vector<CapPoint>& profile, size_t fastest,
                       double eta, double p_max_w, double remaining_work) {
  // Zeus (Chung et al., NSDI 2023): cost = eta*E + (1-eta)*P_max*T, here per
  // unit of work.
  auto cost = [&](const CapPoint& p) {
    return eta * EnergyPerUnit(p) + (1.0 - eta) * p_max_w * TimePerUnit(p);
  };
  size_t best = fastest;
  for (size_t i = 0; i < profile.size(); ++i) {
    if (Better(cost(profile[i]), profile[i].cap_w, cost(profile[best]),
               profile[best].cap_w)) {
      best = i;
    }
  }
  CapDecision decision = Decide(profile[best], remaining_work);
  const std::string cost_text =
      eta == 1.0 ? std::string("least energy per sample")
                 : absl::StrFormat("lowest Zeus cost %.2f*E + %.2f*%s*T", eta, 1.0 - eta,
                                   Watts(p_max_w));
  if (best != fastest) {
    decision.reason =
        absl::StrFormat("%s: %s; %s", Watts(profile[best].cap_w), cost_text,
                        VersusFastest(profile[best], profile[fastest]));
  } else {
    decision.reason = absl::StrFormat("%s: %s; the fastest cap",
                                      Watts(profile[best].cap_w), cost_text);
  }
  return decision;
}

CapDecision ChooseDeadline(const std::vector<CapPoint>& profile, size_t fastest,
                           absl::Time deadline, double remaining_work,
                           absl::Time now) {
  const double seconds_left = absl::ToDoubleSeconds(deadline - now);
  auto needs = [&](const CapPoint& p) {
    return remaining_work * TimePerUnit(p);
  };
  bool found = false;
  size_t best = fastest;
  for (size_t i = 0; i < profile.size(); ++i) {
    if (!AtMost(needs(profile[i]), seconds_left)) continue;
    if (!found || Better(EnergyPerUnit(profile[i]), profile[i].cap_w,
                         EnergyPerUnit(profile[best]), profile[best].cap_w)) {
      best = i;
      found = true;
    }
  }
  CapDecision decision = Decide(profile[best], remaining_work);
  const absl::Duration needed = absl::Seconds(needs(profile[best]));
  const absl::Duration left = deadline - now;
  if (!found) {
    decision.objective_met = false;
    const std::string time_text =
        left < absl::ZeroDuration()
            ? absl::StrFormat("needs %s; the deadline passed %s ago",
                              CeilSeconds(needed), FloorSeconds(-left))
            : absl::StrFormat("needs %s, %s left", CeilSeconds(needed),
                              FloorSeconds(left));
    decision.reason = absl::StrFormat(
        "%s (fastest): misses the deadline by %s even at full speed (%s)",
        Watts(profile[best].cap_w), CeilSeconds(needed - left), time_text);
    return decision;
  }
  const std::string time_text = absl::StrFormat(
      "needs %s of %s left", CeilSeconds(needed), FloorSeconds(left));
  if (best != fastest) {
    decision.reason = absl::StrFormat(
        "%s: least energy per sample that finishes by the deadline (%s); %s",
        Watts(profile[best].cap_w), time_text,
        VersusFastest(profile[best], profile[fastest]));
  } else {
    decision.reason = absl::StrFormat(
        "%s: the fastest cap; no slower cap finishes by the deadline with less "
        "energy per sample (%s)",
        Watts(profile[best].cap_w), time_text);
  }
  return decision;
}

bool FinitePositive(double x) { return std::isfinite(x) && x > 0; }

}  // namespace

absl::Status ValidateProfile(const std::vector<CapPoint>& profile) {
  absl::flat_hash_set<double> caps;
  for (size_t i = 0; i < profile.size(); ++i) {
    const CapPoint& p = profile[i];
    if (!FinitePositive(p.cap_w) || !FinitePositive(p.throughput) ||
        !FinitePositive(p.power_w)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "profile point %d (cap_w=%g, throughput=%g, power_w=%g): cap, "
          "throughput and power must be finite and positive",
          i, p.cap_w, p.throughput, p.power_w));
    }
    if (!caps.insert(p.cap_w).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("profile point %d: cap %s appears more than once", i,
                          Watts(p.cap_w)));
    }
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<CapDecision> ChooseCapForPower(const std::vector<CapPoint>& profile,
                                              const v1::Objective& objective,
                                              double p_max_w, double remaining_work,
                                              absl::Time now) {
  if (profile.empty()) {
    return absl::InvalidArgumentError("empty profile: no cap to choose from");
  }
  if (absl::Status status = ValidateProfile(profile); !status.ok()) {
    return status;
  }
  if (!FinitePositive(p_max_w)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "p_max_w must be finite and positive, got %g", p_max_w));
  }
  if (!std::isfinite(remaining_work) || remaining_work < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "remaining_work must be finite and non-negative, got %g",
        remaining_work));
  }
  const size_t fastest = FastestIndex(profile);
  switch (objective.goal_case()) {
    case v1::Objective::GOAL_NOT_SET:
      // The default: the least energy per unit of work, which with the
      // node's static power counted is the job's whole energy.
      return ChooseZeus(profile, fastest, 1.0, p_max_w, remaining_work);
    case v1::Objective::kMaxSlowdown: {
      const double s = objective.max_slowdown();
      if (!std::isfinite(s) || s < 1.0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "max_slowdown must be a finite number >= 1, got %g", s));
      }
      return ChooseMaxSlowdown(profile, fastest, s, remaining_work);
    }
    case v1::Objective::kEnergyTimeWeight: {
      const double eta = objective.energy_time_weight();
      if (!(eta >= 0.0 && eta <= 1.0)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "energy_time_weight must be in [0, 1], got %g", eta));
      }
      return ChooseZeus(profile, fastest, eta, p_max_w, remaining_work);
    }
    case v1::Objective::kDeadline: {
      const auto& ts = objective.deadline();
      if (ts.nanos() < 0 || ts.nanos() >= 1000000000 ||
          ts.seconds() < kMinTimestampSeconds ||
          ts.seconds() > kMaxTimestampSeconds) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "deadline is not a valid timestamp (seconds=%d, nanos=%d)",
            ts.seconds(), ts.nanos()));
      }
      const absl::Time deadline =
          absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
      return ChooseDeadline(profile, fastest, deadline, remaining_work, now);
    }
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "unknown objective goal %d", static_cast<int>(objective.goal_case())));
}

}  // namespace

absl::StatusOr<CapDecision> ChooseCap(const std::vector<CapPoint>& measured,
                                      const v1::Objective& objective,
                                      double p_max_w, double remaining_work,
                                      absl::Time now, double static_w) {
  if (!std::isfinite(static_w) || static_w < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "static_w must be finite and non-negative, got %g", static_w));
  }
  if (static_w == 0) return ChooseCapForPower(measured, objective, p_max_w, remaining_work, now);
  std::vector<CapPoint> total = measured;
  for (CapPoint& point : total) point.power_w += static_w;
  absl::StatusOr<CapDecision> decision =
      ChooseCapForPower(total, objective, p_max_w, remaining_work, now);
  if (decision.ok()) {
    absl::StrAppendFormat(&decision->reason, "; energy counts %s of node static power",
                          Watts(static_w));
  }
  return decision;
}

}  // namespace joule
