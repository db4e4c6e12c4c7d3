#include "scheduler/bandit/batch_size_bandit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace joule {
namespace {

constexpr absl::string_view kSerializationHeader = "joule.BatchSizeBandit v1";

// Distance between two positive batch sizes in log scale: 16 and 64 are
// equally far from 32.
double LogDistance(int32_t a, int32_t b) {
  return std::abs(std::log2(static_cast<double>(a)) -
                  std::log2(static_cast<double>(b)));
}

absl::Status ValidateOptions(const BatchSizeBanditOptions& options) {
  if (!(options.prune_factor == 0 ||
        (std::isfinite(options.prune_factor) && options.prune_factor >= 1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prune_factor must be 0 (off) or >= 1, got ", options.prune_factor));
  }
  if (options.prune_min_observations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prune_min_observations must be >= 1, got ",
                     options.prune_min_observations));
  }
  if (!std::isfinite(options.prior_relative_noise) ||
      options.prior_relative_noise < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior_relative_noise must be finite and >= 0, got ",
                     options.prior_relative_noise));
  }
  if (!std::isfinite(options.prior_noise_dof) || options.prior_noise_dof < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior_noise_dof must be finite and >= 0, got ",
                     options.prior_noise_dof));
  }
  return absl::OkStatus();
}

// Per-field fallback to the defaults for the lenient constructor.
BatchSizeBanditOptions SanitizeOptions(BatchSizeBanditOptions options) {
  const BatchSizeBanditOptions defaults;
  if (!(options.prune_factor == 0 ||
        (std::isfinite(options.prune_factor) && options.prune_factor >= 1))) {
    options.prune_factor = defaults.prune_factor;
  }
  if (options.prune_min_observations < 1) {
    options.prune_min_observations = defaults.prune_min_observations;
  }
  if (!std::isfinite(options.prior_relative_noise) ||
      options.prior_relative_noise < 0) {
    options.prior_relative_noise = defaults.prior_relative_noise;
  }
  if (!std::isfinite(options.prior_noise_dof) || options.prior_noise_dof < 0) {
    options.prior_noise_dof = defaults.prior_noise_dof;
  }
  return options;
}

std::string FormatDouble(double value) {
  return absl::StrFormat("%.17g", value);
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("corrupt BatchSizeBandit state: ", what));
}

// Parses "<key> <value>" with a finite double value.
absl::StatusOr<double> ParseDoubleField(absl::string_view line,
                                        absl::string_view key) {
  std::vector<absl::string_view> tokens =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  double value = 0;
  if (tokens.size() != 2 || tokens[0] != key ||
      !absl::SimpleAtod(tokens[1], &value) || !std::isfinite(value)) {
    return Corrupt(absl::StrCat("expected '", key, " <number>'"));
  }
  return value;
}

absl::StatusOr<int32_t> ParseIntField(absl::string_view line,
                                      absl::string_view key) {
  std::vector<absl::string_view> tokens =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  int32_t value = 0;
  if (tokens.size() != 2 || tokens[0] != key ||
      !absl::SimpleAtoi(tokens[1], &value)) {
    return Corrupt(absl::StrCat("expected '", key, " <integer>'"));
  }
  return value;
}

}  // namespace

std::vector<int32_t> CandidateBatchSizes(int32_t min, int32_t default_size,
                                         int32_t max, int max_count) {
  min = std::max<int32_t>(min, 1);
  max = std::max(max, min);
  default_size = std::clamp(default_size, min, max);
  max_count = std::max(max_count, 3);

  std::vector<int32_t> powers;
  // int64_t so that doubling past 2^30 cannot overflow.
  for (int64_t p = 1; p <= max; p *= 2) {
    if (p > min && p < max && p != default_size) {
      powers.push_back(static_cast<int32_t>(p));
    }
  }
  std::vector<int32_t> result = {min, default_size, max};
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());

  const size_t slots = static_cast<size_t>(max_count) - result.size();
  if (powers.size() > slots) {
    // Keep the powers of two nearest the default.
    std::stable_sort(
        powers.begin(), powers.end(), [default_size](int32_t a, int32_t b) {
          return LogDistance(a, default_size) < LogDistance(b, default_size);
        });
    powers.resize(slots);
  }
  result.insert(result.end(), powers.begin(), powers.end());
  std::sort(result.begin(), result.end());
  return result;
}

absl::StatusOr<BatchSizeBandit> BatchSizeBandit::Create(
    std::vector<int32_t> arms, int32_t default_arm,
    BatchSizeBanditOptions options) {
  if (arms.empty()) {
    return absl::InvalidArgumentError("a batch size bandit needs arms");
  }
  for (int32_t arm : arms) {
    if (arm <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch sizes must be positive, got ", arm));
    }
  }
  if (std::find(arms.begin(), arms.end(), default_arm) == arms.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "default batch size ", default_arm, " is not among the arms"));
  }
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return status;
  }
  return BatchSizeBandit(std::move(arms), default_arm, options);
}

BatchSizeBandit::BatchSizeBandit(std::vector<int32_t> arms, int32_t default_arm,
                                 BatchSizeBanditOptions options)
    : default_arm_(default_arm), options_(SanitizeOptions(options)) {
  arms.erase(std::remove_if(arms.begin(), arms.end(),
                            [](int32_t arm) { return arm <= 0; }),
             arms.end());
  std::sort(arms.begin(), arms.end());
  arms.erase(std::unique(arms.begin(), arms.end()), arms.end());
  arms_ = std::move(arms);
  stats_.resize(arms_.size());

  // Exploration order: by log distance from the default (which is 0 for the
  // default itself), ties to the smaller batch. A non-positive default is
  // treated as 1, i.e. exploration starts from the smallest arm.
  const int32_t anchor = std::max<int32_t>(default_arm, 1);
  exploration_order_.resize(arms_.size());
  for (size_t i = 0; i < arms_.size(); ++i) exploration_order_[i] = i;
  std::stable_sort(exploration_order_.begin(), exploration_order_.end(),
                   [this, anchor](int a, int b) {
                     return LogDistance(arms_[a], anchor) <
                            LogDistance(arms_[b], anchor);
                   });
}

int BatchSizeBandit::IndexOf(int32_t arm) const {
  auto it = std::lower_bound(arms_.begin(), arms_.end(), arm);
  if (it == arms_.end() || *it != arm) return -1;
  return static_cast<int>(it - arms_.begin());
}

double BatchSizeBandit::NoiseStd() const {
  int64_t total_n = 0;
  for (const ArmStats& s : stats_) total_n += s.n;
  if (total_n == 0) return 0;
  double overall_mean = 0;
  double within_ss = 0;
  double within_dof = 0;
  for (const ArmStats& s : stats_) {
    if (s.n == 0) continue;
    overall_mean += (static_cast<double>(s.n) / total_n) * s.mean;
    within_ss += s.m2;
    within_dof += static_cast<double>(s.n - 1);
  }
  const double prior_std =
      options_.prior_relative_noise * std::abs(overall_mean);
  const double dof = options_.prior_noise_dof + within_dof;
  if (dof <= 0) return prior_std;
  const double variance =
      (options_.prior_noise_dof * prior_std * prior_std + within_ss) / dof;
  return std::sqrt(std::max(variance, 0.0));
}

double BatchSizeBandit::Scale(absl::Span<const double> scales, int index) {
  return scales.empty() ? 1.0 : scales[index];
}

double BatchSizeBandit::PruneReferenceMean(absl::Span<const double> scales) const {
  double best = -1;
  for (size_t i = 0; i < stats_.size(); ++i) {
    const double mean = stats_[i].mean * Scale(scales, i);
    if (stats_[i].n >= options_.prune_min_observations && (best < 0 || mean < best)) {
      best = mean;
    }
  }
  return best;
}

bool BatchSizeBandit::IsPruned(int index, absl::Span<const double> scales) const {
  if (options_.prune_factor == 0) return false;
  const ArmStats& s = stats_[index];
  if (s.n < options_.prune_min_observations) return false;
  const double reference = PruneReferenceMean(scales);
  return reference >= 0 && s.mean * Scale(scales, index) > options_.prune_factor * reference;
}

absl::StatusOr<int32_t> BatchSizeBandit::Choose(absl::BitGenRef gen,
                                                absl::Span<const int32_t> in_flight,
                                                bool explore, absl::Span<const double> scales) {
  if (arms_.empty()) {
    return absl::FailedPreconditionError("the batch size bandit has no arms");
  }
  if (!scales.empty() && scales.size() != arms_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "got ", scales.size(), " cost scales for ", arms_.size(), " batch-size arms"));
  }
  for (double scale : scales) {
    if (!std::isfinite(scale) || scale <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("a batch-size arm's cost scale must be finite and > 0, got ", scale));
    }
  }
  std::vector<int64_t> running(arms_.size(), 0);
  for (int32_t arm : in_flight) {
    const int index = IndexOf(arm);
    if (index >= 0) ++running[index];
  }
  // 1. Exploration: every arm once, starting from the default, one run each.
  if (explore) {
    for (int index : exploration_order_) {
      if (stats_[index].n == 0 && running[index] == 0) return arms_[index];
    }
  }
  // 2 + 3. Thompson sampling (or the best mean) over the observed arms that
  // are not pruned. The best arm by mean is never pruned.
  const double sigma = NoiseStd();
  int best_index = -1;
  double best_value = 0;
  for (int index : exploration_order_) {
    const ArmStats& s = stats_[index];
    if (s.n == 0 || IsPruned(index, scales)) continue;
    double value = s.mean;
    if (explore) {
      const double posterior_std =
          sigma / std::sqrt(static_cast<double>(s.n + running[index]));
      if (posterior_std > 0) {
        value += posterior_std * absl::Gaussian<double>(gen, 0.0, 1.0);
      }
    } else {
      value += sigma / std::sqrt(static_cast<double>(s.n));
    }
    value *= Scale(scales, index);
    if (best_index < 0 || value < best_value) {
      best_index = index;
      best_value = value;
    }
  }
  // 4. Nothing observed yet.
  if (best_index < 0) return arms_[exploration_order_.front()];
  return arms_[best_index];
}

absl::Status BatchSizeBandit::Observe(int32_t arm, double cost) {
  const int index = IndexOf(arm);
  if (index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size ", arm, " is not an arm of this bandit"));
  }
  if (!std::isfinite(cost) || cost < 0 || cost > kMaxCost) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cost must be finite, >= 0 and <= ", kMaxCost, ", got ", cost));
  }
  ArmStats& s = stats_[index];
  ++s.n;
  const double delta = cost - s.mean;
  s.mean += delta / static_cast<double>(s.n);
  s.m2 += delta * (cost - s.mean);
  return absl::OkStatus();
}

int32_t BatchSizeBandit::BestMean() const {
  if (arms_.empty()) return 0;
  int best_index = -1;
  for (int index : exploration_order_) {
    if (stats_[index].n == 0) continue;
    if (best_index < 0 || stats_[index].mean < stats_[best_index].mean) {
      best_index = index;
    }
  }
  return arms_[best_index < 0 ? exploration_order_.front() : best_index];
}

std::vector<BatchSizeArmSummary> BatchSizeBandit::Summaries() const {
  const double sigma = NoiseStd();
  std::vector<BatchSizeArmSummary> summaries;
  summaries.reserve(arms_.size());
  for (size_t i = 0; i < arms_.size(); ++i) {
    BatchSizeArmSummary summary;
    summary.batch_size = arms_[i];
    summary.observations = stats_[i].n;
    summary.mean = stats_[i].mean;
    summary.std = stats_[i].n == 0
                      ? 0
                      : sigma / std::sqrt(static_cast<double>(stats_[i].n));
    summary.pruned = IsPruned(i, {});
    summaries.push_back(summary);
  }
  return summaries;
}

std::string BatchSizeBandit::Explain() const {
  int64_t total_n = 0;
  for (const ArmStats& s : stats_) total_n += s.n;
  std::string out = absl::StrFormat(
      "batch size bandit (Gaussian Thompson sampling): %d arms, default %d, "
      "%d observations, noise std %.4g, best %d\n",
      arms_.size(), default_arm_, total_n, NoiseStd(), BestMean());
  absl::StrAppendFormat(&out, "%10s %8s %14s %12s  %s\n", "batch", "n", "mean",
                        "std", "notes");
  const int32_t best = BestMean();
  for (const BatchSizeArmSummary& arm : Summaries()) {
    std::vector<absl::string_view> notes;
    if (arm.batch_size == default_arm_) notes.push_back("default");
    if (arm.observations == 0) notes.push_back("untried");
    if (arm.observations > 0 && arm.batch_size == best) notes.push_back("best");
    if (arm.pruned) notes.push_back("pruned");
    absl::StrAppendFormat(&out, "%10d %8d %14.6g %12.4g  %s\n", arm.batch_size,
                          arm.observations, arm.mean, arm.std,
                          absl::StrJoin(notes, ","));
  }
  return out;
}

std::string BatchSizeBandit::Serialize() const {
  std::string out = absl::StrCat(kSerializationHeader, "\n");
  absl::StrAppend(&out, "default_arm ", default_arm_, "\n");
  absl::StrAppend(&out, "prune_factor ", FormatDouble(options_.prune_factor),
                  "\n");
  absl::StrAppend(&out, "prune_min_observations ",
                  options_.prune_min_observations, "\n");
  absl::StrAppend(&out, "prior_relative_noise ",
                  FormatDouble(options_.prior_relative_noise), "\n");
  absl::StrAppend(&out, "prior_noise_dof ",
                  FormatDouble(options_.prior_noise_dof), "\n");
  for (size_t i = 0; i < arms_.size(); ++i) {
    // arm <batch size> <n> <mean> <sum of squared deviations>
    absl::StrAppend(&out, "arm ", arms_[i], " ", stats_[i].n, " ",
                    FormatDouble(stats_[i].mean), " ",
                    FormatDouble(stats_[i].m2), "\n");
  }
  absl::StrAppend(&out, "end\n");
  return out;
}

absl::StatusOr<BatchSizeBandit> BatchSizeBandit::Parse(absl::string_view data) {
  std::vector<absl::string_view> lines = absl::StrSplit(data, '\n');
  // Serialize ends with a newline, which leaves one empty last element.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  // Header, default, 4 options, at least one arm, end.
  if (lines.size() < 8) return Corrupt("too short");
  if (lines[0] != kSerializationHeader) return Corrupt("unknown header");
  if (lines.back() != "end") return Corrupt("missing end (truncated?)");

  absl::StatusOr<int32_t> default_arm = ParseIntField(lines[1], "default_arm");
  if (!default_arm.ok()) return default_arm.status();
  if (*default_arm <= 0) return Corrupt("default_arm must be positive");

  BatchSizeBanditOptions options;
  absl::StatusOr<double> prune_factor =
      ParseDoubleField(lines[2], "prune_factor");
  if (!prune_factor.ok()) return prune_factor.status();
  options.prune_factor = *prune_factor;
  absl::StatusOr<int32_t> prune_min =
      ParseIntField(lines[3], "prune_min_observations");
  if (!prune_min.ok()) return prune_min.status();
  options.prune_min_observations = *prune_min;
  absl::StatusOr<double> relative_noise =
      ParseDoubleField(lines[4], "prior_relative_noise");
  if (!relative_noise.ok()) return relative_noise.status();
  options.prior_relative_noise = *relative_noise;
  absl::StatusOr<double> noise_dof =
      ParseDoubleField(lines[5], "prior_noise_dof");
  if (!noise_dof.ok()) return noise_dof.status();
  options.prior_noise_dof = *noise_dof;
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return Corrupt(status.message());
  }

  std::vector<int32_t> arms;
  std::vector<ArmStats> stats;
  for (size_t i = 6; i + 1 < lines.size(); ++i) {
    std::vector<absl::string_view> tokens =
        absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    int32_t arm = 0;
    ArmStats s;
    if (tokens.size() != 5 || tokens[0] != "arm" ||
        !absl::SimpleAtoi(tokens[1], &arm) ||
        !absl::SimpleAtoi(tokens[2], &s.n) ||
        !absl::SimpleAtod(tokens[3], &s.mean) ||
        !absl::SimpleAtod(tokens[4], &s.m2)) {
      return Corrupt(absl::StrCat("bad arm line ", i + 1));
    }
    if (arm <= 0 || (!arms.empty() && arm <= arms.back())) {
      return Corrupt("arms must be positive and strictly increasing");
    }
    if (s.n < 0 || !std::isfinite(s.mean) || !std::isfinite(s.m2) ||
        s.mean < 0 || s.mean > kMaxCost || s.m2 < 0 ||
        (s.n == 0 && s.mean != 0) || (s.n <= 1 && s.m2 != 0)) {
      return Corrupt(absl::StrCat("inconsistent statistics for arm ", arm));
    }
    arms.push_back(arm);
    stats.push_back(s);
  }
  BatchSizeBandit bandit(std::move(arms), *default_arm, options);
  bandit.stats_ = std::move(stats);
  return bandit;
}

int32_t LargestBatchWithinSlo(absl::Span<const BatchLatencyPoint> observed,
                              absl::Span<const int32_t> candidates,
                              double slo_ms) {
  if (candidates.empty()) return 0;
  std::vector<int32_t> sorted_candidates(candidates.begin(), candidates.end());
  std::sort(sorted_candidates.begin(), sorted_candidates.end());
  const int32_t smallest = sorted_candidates.front();
  if (!std::isfinite(slo_ms) || slo_ms <= 0) return smallest;

  // Valid points, sorted by batch size, worst latency per batch size.
  std::vector<BatchLatencyPoint> points;
  for (const BatchLatencyPoint& p : observed) {
    if (p.batch_size > 0 && std::isfinite(p.p95_latency_ms) &&
        p.p95_latency_ms >= 0) {
      points.push_back(p);
    }
  }
  if (points.empty()) return smallest;
  std::sort(points.begin(), points.end(),
            [](const BatchLatencyPoint& a, const BatchLatencyPoint& b) {
              return a.batch_size < b.batch_size ||
                     (a.batch_size == b.batch_size &&
                      a.p95_latency_ms > b.p95_latency_ms);
            });
  points.erase(
      std::unique(points.begin(), points.end(),
                  [](const BatchLatencyPoint& a, const BatchLatencyPoint& b) {
                    return a.batch_size == b.batch_size;
                  }),
      points.end());

  auto estimate_ms = [&points](int32_t batch) {
    const double b = batch;
    double raw = 0;
    if (batch <= points.front().batch_size) {
      raw = points.front().p95_latency_ms;
    } else if (batch >= points.back().batch_size) {
      const BatchLatencyPoint& last = points.back();
      raw = last.p95_latency_ms * b / last.batch_size;
      if (points.size() >= 2) {
        const BatchLatencyPoint& prev = points[points.size() - 2];
        const double slope = (last.p95_latency_ms - prev.p95_latency_ms) /
                             (last.batch_size - prev.batch_size);
        raw =
            std::max(raw, last.p95_latency_ms + slope * (b - last.batch_size));
      }
    } else {
      auto upper =
          std::upper_bound(points.begin(), points.end(), batch,
                           [](int32_t value, const BatchLatencyPoint& p) {
                             return value < p.batch_size;
                           });
      const BatchLatencyPoint& hi = *upper;
      const BatchLatencyPoint& lo = *(upper - 1);
      const double t = (b - lo.batch_size) / (hi.batch_size - lo.batch_size);
      raw = lo.p95_latency_ms + t * (hi.p95_latency_ms - lo.p95_latency_ms);
    }
    // Running maximum: never below a latency observed at a smaller batch.
    for (const BatchLatencyPoint& p : points) {
      if (p.batch_size > batch) break;
      raw = std::max(raw, p.p95_latency_ms);
    }
    return raw;
  };

  int32_t chosen = smallest;
  for (int32_t batch : sorted_candidates) {
    if (batch > 0 && estimate_ms(batch) <= slo_ms) chosen = batch;
  }
  return chosen;
}

}  // namespace joule
