#ifndef JOULE_SCHEDULER_BANDIT_BATCH_SIZE_BANDIT_H_
#define JOULE_SCHEDULER_BANDIT_BATCH_SIZE_BANDIT_H_

// Batch-size choice for the energy brain (DESIGN.md section 4, "Batch size").
//
// Training: a multi-armed bandit over candidate batch sizes that learns, across
// recurrences of a job class, which batch size minimizes a cost such as
// energy-to-target (Zeus, Jae-Won Chung et al., "Zeus: Understanding and
// Optimizing GPU Energy Consumption of DNN Training", NSDI 2023: Gaussian
// Thompson sampling over batch sizes, minimizing energy-to-accuracy rather than
// energy-per-epoch).
//
// Inference: the largest batch whose p95 latency at the current request rate
// stays within the latency SLO (`LargestBatchWithinSlo`).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace joule {

// The most candidates `CandidateBatchSizes` returns by default. Every arm costs
// at least one full recurrence of the job to explore, so few arms are better.
inline constexpr int kMaxCandidateBatchSizes = 8;

// Candidate batch sizes (the bandit's arms) for a job allowed to use
// [min, max] with `default_size` as its default: the powers of two inside the
// range plus min, default and max, sorted and deduplicated. When there are more
// than `max_count` (at least 3) the extremes and the default are always kept
// and the remaining slots go to the powers of two closest to the default in log
// scale (ties: the smaller), since the energy-optimal batch size is usually
// near the one the workload was tuned for.
//
// Lenient on bad ranges (the job spec validator rejects them first): a min
// below 1 is taken as 1, a max below min as min, and the default is clamped
// into [min, max]. Never returns an empty vector.
std::vector<int32_t> CandidateBatchSizes(
    int32_t min, int32_t default_size, int32_t max,
    int max_count = kMaxCandidateBatchSizes);

// Tunables of `BatchSizeBandit`. Flow from the scheduler's config.
struct BatchSizeBanditOptions {
  // Zeus-style pruning: an arm with at least `prune_min_observations`
  // observations whose mean cost exceeds `prune_factor` x the lowest mean among
  // such arms is no longer chosen. 0 disables pruning; otherwise must be >= 1.
  double prune_factor = 0;
  int32_t prune_min_observations = 2;
  // Prior on the observation noise: a standard deviation of
  // `prior_relative_noise` x |mean of all observations|, worth
  // `prior_noise_dof` degrees of freedom. Scale-free, so it works for joules,
  // joules per sample or any other non-negative cost.
  double prior_relative_noise = 0.1;
  double prior_noise_dof = 2;
};

// What the bandit believes about one arm; for explanations and tests.
struct BatchSizeArmSummary {
  int32_t batch_size = 0;
  int64_t observations = 0;
  // Posterior mean of the arm's mean cost (the sample mean; 0 when unobserved).
  double mean = 0;
  // Posterior standard deviation of the arm's mean cost (noise std / sqrt(n));
  // 0 when unobserved.
  double std = 0;
  bool pruned = false;
};

// Chooses a batch size for each recurrence of a job class so as to minimize a
// non-negative cost per recurrence (energy-to-target in joules, or joules per
// sample), learning from the cost each recurrence reports.
//
// Model. Each arm a has an unknown mean cost mu_a; an observation is
// mu_a + noise, noise ~ Normal(0, sigma^2) with one sigma shared by all arms.
// With a flat prior on mu_a the posterior is mu_a ~ Normal(xbar_a,
// sigma^2/n_a). sigma is not known: it is estimated from all observations as
// the pooled within-arm variance, shrunk towards a scale-free prior guess:
//   sigma^2 = (nu0 * s0^2 + sum_a SS_a) / (nu0 + sum_a (n_a - 1)),
//   s0 = prior_relative_noise * |mean of all observations|,
// i.e. the posterior mode of a scaled-inverse-chi-square prior, plugged in as
// if known. Why this and not a per-arm Normal-Inverse-Gamma posterior: each
// observation is a whole training run, so arms see one to a handful of
// observations, far too few to estimate a variance per arm; the run-to-run
// noise of a job's energy-to-target comes mostly from the job (seed, data
// order), not from the batch size, so pooling is a fair assumption; and a
// pooled estimate needs no prior in the cost's units. The price: the plug-in
// sigma understates uncertainty while few observations exist, which the
// deterministic first pass over all arms (step 1) offsets.
//
// Algorithm for `Choose` (Thompson sampling: Russo, Van Roy, Kazerouni, Osband
// and Wen, "A Tutorial on Thompson Sampling", 2018; Gaussian arms as in Zeus).
// The caller passes the arms of the recurrences still running (`in_flight`,
// one entry per run) and whether this recurrence may explore:
//   1. Exploration (only when allowed): the first arm in a fixed order that
//      has no observation and no run in flight: the default batch size, then
//      the others by log-scale distance from it (ties: the smaller batch). No
//      randomness is used. An untried arm already in flight is not handed out
//      again: its result is on its way.
//   2. Pruning (optional, as Zeus does): skip arms whose mean is more than
//      `prune_factor` x the best mean after >= `prune_min_observations`
//      observations. Pruning is re-evaluated each call from the statistics, so
//      it needs no state of its own.
//   3. With exploration allowed, Thompson sampling over the observed arms
//      that are not pruned: draw one sample of each arm's mean from
//      Normal(xbar_a, sigma^2 / (n_a + k_a)) and return the lowest draw (ties:
//      the earlier arm in the step-1 order). k_a counts the arm's runs in
//      flight as if each had returned the arm's mean (the "believer"
//      heuristic of batch Bayesian optimization), so that a burst of
//      arrivals does not all draw the same lucky arm before any result is
//      back. Without exploration: the observed, unpruned arm with the lowest
//      pessimistic cost, xbar_a + sigma / sqrt(n_a) (one posterior standard
//      deviation above its mean): a job that may not explore gets an arm
//      whose cost is known, not one that looked best after a single lucky
//      run.
//   Scales (optional, one per arm, in `arms()` order): the cost an arm is
//   judged by is its learned cost times its scale. The bandit then learns one
//   factor of a product and the caller knows the other, e.g. the samples an
//   arm needs to reach the target (learned) times the joules a sample costs
//   at that batch size on the GPUs at hand (measured elsewhere). Pruning,
//   draws and the pessimistic cost are all compared after scaling.
//   4. When no arm qualifies (nothing observed and every untried arm in
//      flight, or exploration not allowed before any observation): the
//      default batch size.
//
// The state (arms, default, options, per-arm n / mean / sum of squares) is
// small and round-trips exactly through `Serialize` / `Parse`, so the scheduler
// can keep one bandit per job class in its store across recurrences and
// restarts. Non-stationarity (a job class whose costs drift) is not modelled.
//
// Threading: owned by the scheduler loop, not thread-safe.
class BatchSizeBandit {
 public:
  // Validating factory: INVALID_ARGUMENT if `arms` is empty, holds a
  // non-positive batch size, does not contain `default_arm`, or `options` is
  // out of range. Duplicate arms are merged.
  static absl::StatusOr<BatchSizeBandit> Create(
      std::vector<int32_t> arms, int32_t default_arm,
      BatchSizeBanditOptions options = {});

  // Lenient constructor: sorts and deduplicates `arms` and drops non-positive
  // ones; if `default_arm` is not an arm, exploration starts from the arm
  // nearest to it in log scale; out-of-range options fall back to defaults.
  // With no arm left, `Choose` answers FAILED_PRECONDITION.
  BatchSizeBandit(std::vector<int32_t> arms, int32_t default_arm,
                  BatchSizeBanditOptions options = {});

  // The batch size to use for the next recurrence (see the class comment).
  // `in_flight` holds the arm of every recurrence still running (entries
  // that are not arms are ignored). `scales`: empty, or one finite positive
  // factor per arm (see the class comment); INVALID_ARGUMENT otherwise.
  // FAILED_PRECONDITION if the bandit has no arms.
  absl::StatusOr<int32_t> Choose(absl::BitGenRef gen,
                                 absl::Span<const int32_t> in_flight = {},
                                 bool explore = true, absl::Span<const double> scales = {});

  // Records the cost one recurrence incurred with batch size `arm`.
  // INVALID_ARGUMENT for an unknown arm or a cost that is negative, not finite
  // or above `kMaxCost`; the state is then unchanged.
  absl::Status Observe(int32_t arm, double cost);

  // The observed arm with the lowest posterior mean cost (ties: the earlier
  // arm in exploration order), for exploit-only decisions and explanations;
  // the default arm if nothing was observed yet; 0 if there are no arms.
  int32_t BestMean() const;

  // Per arm: observations, mean, posterior std and flags; one line per arm.
  // For `joulectl explain`.
  std::string Explain() const;

  // Text encoding of the whole state; doubles are written with 17 significant
  // digits so that `Parse(Serialize())` restores them bit for bit.
  std::string Serialize() const;
  // DATA_LOSS for anything `Serialize` would not have produced.
  static absl::StatusOr<BatchSizeBandit> Parse(absl::string_view data);

  // The estimated observation noise standard deviation (sigma above); 0 before
  // any observation.
  double NoiseStd() const;
  std::vector<BatchSizeArmSummary> Summaries() const;
  const std::vector<int32_t>& arms() const { return arms_; }
  int32_t default_arm() const { return default_arm_; }
  const BatchSizeBanditOptions& options() const { return options_; }

  // Costs above this are rejected: far beyond any real energy in joules, and
  // small enough that sums of squares cannot overflow.
  static constexpr double kMaxCost = 1e18;

 private:
  // Running statistics of one arm (Welford's algorithm).
  struct ArmStats {
    int64_t n = 0;
    double mean = 0;
    // Sum of squared deviations from the mean.
    double m2 = 0;
  };

  // Index of `arm` in `arms_`, or -1.
  int IndexOf(int32_t arm) const;
  // Arm `index`'s factor in `scales` (1 when empty).
  static double Scale(absl::Span<const double> scales, int index);
  // Whether arm `index` is pruned given the current statistics and scales.
  bool IsPruned(int index, absl::Span<const double> scales) const;
  // Lowest scaled mean among arms with >= prune_min_observations
  // observations, or a negative number if there is none.
  double PruneReferenceMean(absl::Span<const double> scales) const;

  std::vector<int32_t> arms_;  // sorted, unique, positive
  int32_t default_arm_ = 0;
  BatchSizeBanditOptions options_;
  std::vector<ArmStats> stats_;  // parallel to arms_
  // Indices into arms_: the default first, then by distance from it.
  std::vector<int> exploration_order_;
};

// One measurement for `LargestBatchWithinSlo`.
struct BatchLatencyPoint {
  int32_t batch_size = 0;
  double p95_latency_ms = 0;
};

// Inference batch size: the largest of `candidates` whose estimated p95
// latency at the current request rate is <= `slo_ms`, given latencies observed
// at that rate for some batch sizes; the smallest candidate if none qualifies
// (or nothing was observed, or the SLO is not a positive finite number); 0 if
// `candidates` is empty. Pure function.
//
// Estimate for a batch size b, from the observed points sorted by batch size
// (points with a non-positive batch size or a negative or non-finite latency
// are ignored; repeated batch sizes keep their worst latency):
//   - between two observed batch sizes: linear interpolation;
//   - below the smallest observed batch size: that point's latency (a smaller
//     batch is assumed no faster, which overestimates);
//   - above the largest observed batch size b_n with latency L_n: the larger of
//     L_n * b / b_n (no further amortization: per-sample time constant, an
//     upper bound while latency is sublinear in batch size) and the
//     continuation of the last segment's slope (which covers latency that is
//     already growing faster than linearly, e.g. from queueing);
//   - finally the running maximum over observed points at or below b, so the
//     estimate never decreases with batch size: a noisy dip in the middle of
//     the curve cannot make a larger batch look safe.
int32_t LargestBatchWithinSlo(absl::Span<const BatchLatencyPoint> observed,
                              absl::Span<const int32_t> candidates,
                              double slo_ms);

}  // namespace joule

#endif  // JOULE_SCHEDULER_BANDIT_BATCH_SIZE_BANDIT_H_
