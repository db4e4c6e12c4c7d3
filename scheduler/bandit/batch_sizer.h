#ifndef JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_
#define JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_

// The training batch size of each attempt, learned per job class (DESIGN.md
// section 4, "Batch size"): one BatchSizeBandit per class, plus what the
// bandit alone cannot know.
//
//  - Size and GPU. Jobs of one class differ in size (one trains for minutes,
//    the next for weeks) and run on different GPU models. A job may declare
//    its expected work (`expected_samples`, samples to the target at the
//    default batch size). The bandit of such a class then learns the work
//    ratio of each batch size: the samples a finished run needed to reach its
//    target over the samples it declared. That ratio depends on the workload
//    and the batch size, not on the job's size or its GPUs, so every run
//    teaches it. The cost a batch size is chosen by is the ratio times the
//    joules a sample costs at that batch size on the GPUs the job was placed
//    on (`BatchRequest::sample_costs`, from the energy model's run costs):
//    joules per declared sample, predicted for this placement. Without a
//    declaration the cost is the raw energy to the target, which compares
//    only recurrences of one size (Zeus's setting).
//  - Who explores. Trying an untested batch size on a large job can cost more
//    than every later saving. A job explores only when its declared size is
//    at most the class's typical size (the geometric mean of the declared
//    sizes seen so far, this job included); a larger job exploits the best
//    batch size measured so far. A job without a declared size explores.
//  - Runs in flight. The bandit is told the batch size of every attempt of
//    the class still running, so a burst of arrivals does not all get the
//    same untried batch size before its first result is back.
//  - One unit per class. The first run a class learns from fixes what its
//    bandit's costs mean (work ratio, joules to target, or joules per sample
//    for runs that report no target); a run that would teach another unit is
//    refused rather than mixed in.
//
// State per class (the bandit and the size statistics) round-trips through
// `SerializeClass` / `ParseClass`, so the scheduler keeps it in its store.
// The attempts in flight are not stored: after a restart the scheduler
// re-adds its running attempts with `Started`.
//
// Threading: owned by the scheduler and called under its lock; not
// thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/bandit/batch_size_bandit.h"

namespace joule {

// The joules one sample costs at each of `batch_sizes` on the GPUs at hand,
// one value (> 0) per batch size in order; empty when nothing is known.
using SampleCosts = std::function<std::vector<double>(const std::vector<int32_t>& batch_sizes)>;

// What one attempt asks for.
struct BatchRequest {
  std::string job_id;
  std::string job_class;
  int32_t min = 0;
  int32_t default_size = 0;
  int32_t max = 0;
  // JobSpec.expected_samples; 0 when the job declares none.
  double expected_samples = 0;
  // Only a job's first attempt counts towards the class's typical size.
  bool first_attempt = true;
  // Joules per sample on the GPUs the attempt was placed on (see the class
  // comment); may be empty.
  SampleCosts sample_costs;
  // Those GPUs' model, for the explanation.
  std::string gpu_model;
};

// What one finished attempt teaches.
struct BatchOutcome {
  std::string job_id;
  std::string job_class;
  int32_t batch_size = 0;
  // The attempt's energy (GPU and attributed static) and samples.
  double joules = 0;
  double samples = 0;
  // Whether the workload said it reached its target.
  bool target_reached = false;
  double expected_samples = 0;
};

struct BatchChoice {
  int32_t batch_size = 0;
  // One line for `joulectl explain`, then the bandit's table.
  std::string reason;
};

class BatchSizer {
 public:
  explicit BatchSizer(BatchSizeBanditOptions options = {}) : options_(options) {}

  // The batch size of a new attempt, recorded as in flight under
  // `request.job_id` until `Finished`. `running(job_id)`
  // tells whether an attempt recorded earlier still runs; ones that do not
  // are forgotten first (an attempt may end in ways that never teach, e.g.
  // a cancel or a lost node).
  BatchChoice Choose(const BatchRequest& request, absl::BitGenRef gen,
                     const std::function<bool(const std::string&)>& running);

  // Whether a job of `expected_samples` is small enough to explore in its
  // class: at most the class's typical declared size. True without a
  // declared size or before the class has seen one.
  bool MayExplore(const std::string& job_class, double expected_samples) const;

  // Re-adds an attempt that is running at `batch_size` (after a restart).
  // `request` names the job, its class and batch range; a class the store
  // did not hold (none of its runs had finished) is created from the range.
  void Started(const BatchRequest& request, int32_t batch_size);

  // Learns from a finished attempt and forgets it as in flight. What it
  // teaches: the work ratio (samples done over declared samples) where the
  // job declares its size and reached its target; the joules to the target
  // where it reached it without a declaration; else joules per sample done.
  // NOT_FOUND for a class without a bandit; INVALID_ARGUMENT for an attempt
  // with nothing to learn (no energy, no samples, a declared job that did
  // not reach its target), a batch size that is not an arm, or a unit other
  // than the class's (see the class comment).
  absl::Status Finished(const BatchOutcome& outcome);

  // Mid-run check of a running attempt of a class that learns work ratios,
  // as Zeus stops runs past beta x the best cost. `projected_ratio`: the
  // attempt's total samples (as its replicas report them) over its declared
  // samples; `joules_per_sample`: what a sample has cost it so far. When its
  // projected cost (their product) is more than `factor` x the lowest
  // predicted cost of a measured batch size in [min, max] (mean ratio times
  // `sample_costs`), and that batch size differs from `batch_size`, returns
  // it: the caller moves the attempt there. The projected ratio is recorded
  // as an observation of `batch_size`, and the attempt is no longer in
  // flight (its final cost mixes two batch sizes and teaches nothing).
  // Otherwise 0.
  int32_t CheckRunning(const std::string& job_class, const std::string& job_id,
                       int32_t batch_size, double projected_ratio, double joules_per_sample,
                       const SampleCosts& sample_costs, double factor, int32_t min, int32_t max);

  // Text of one class's state for the store; empty for an unknown class.
  std::string SerializeClass(const std::string& job_class) const;
  // Restores a class stored by `SerializeClass`. FAILED_PRECONDITION for the
  // state of an earlier version (a bare BatchSizeBandit, or "joule.BatchSizer
  // v1", whose costs mixed the work ratio with the GPUs' joules and cannot
  // be split again): the class then learns afresh. DATA_LOSS for anything
  // else. The class is unchanged on any error.
  absl::Status ParseClass(const std::string& job_class, absl::string_view data);

  // The class's bandit, or nullptr.
  const BatchSizeBandit* Bandit(const std::string& job_class) const;
  size_t classes() const { return classes_.size(); }

 private:
  // What a class's bandit costs mean; fixed by the first run it learns from.
  enum class Unit { kUnset, kWorkRatio, kJoulesToTarget, kJoulesPerSample };
  static const char* UnitName(Unit unit);

  struct ClassState {
    BatchSizeBandit bandit;
    Unit unit = Unit::kUnset;
    // Declared sizes seen: count and sum of natural logs.
    int64_t sizes = 0;
    double log_size_sum = 0;
    // job id -> batch size of its attempt in flight.
    std::map<std::string, int32_t> in_flight;
  };

  // Per arm of `state`'s bandit: the sample costs of `costs`, or empty when
  // the class does not learn work ratios or they are unknown or unusable.
  static std::vector<double> Scales(const ClassState& state, const SampleCosts& costs);

  // The class of `request`, created from its range when new.
  ClassState& ClassOf(const BatchRequest& request);

  BatchSizeBanditOptions options_;
  std::map<std::string, ClassState> classes_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_
