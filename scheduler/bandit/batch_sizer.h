#ifndef JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_
#define JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_

// The training batch size of each attempt, learned per job class (DESIGN.md
// section 4, "Batch size"): one BatchSizeBandit per class, plus what the
// bandit alone cannot know.
//
//  - Size. Jobs of one class differ in size: one trains for minutes, the next
//    for weeks. A job may declare its expected work (`expected_samples`,
//    samples to the target at the default batch size). The cost a finished
//    attempt teaches is then its energy per declared sample, so jobs of any
//    size teach one bandit. Without a declaration the cost is the raw energy
//    to the target, which compares only recurrences of one size (Zeus's
//    setting).
//  - Who explores. Trying an untested batch size on a large job can cost more
//    than every later saving. A job explores only when its declared size is
//    at most the class's typical size (the geometric mean of the declared
//    sizes seen so far, this job included); a larger job exploits the best
//    batch size measured so far. A job without a declared size explores.
//  - Runs in flight. The bandit is told the batch size of every attempt of
//    the class still running, so a burst of arrivals does not all get the
//    same untried batch size before its first result is back.
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

#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/bandit/batch_size_bandit.h"

namespace joule {

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
  void Started(const std::string& job_class, const std::string& job_id, int32_t batch_size);

  // Learns from a finished attempt and forgets it as in flight. The cost:
  // joules per declared sample where the job declares its size and reached
  // its target; joules to the target where it reached it without a
  // declaration; else joules per sample done. NOT_FOUND for a class without
  // a bandit, INVALID_ARGUMENT for an attempt with nothing to learn (no
  // energy, no samples), a batch size that is not an arm, or an undeclared
  // job's joules to target in a class that has seen declared sizes (the
  // units would mix).
  absl::Status Finished(const BatchOutcome& outcome);

  // Mid-run check of a running attempt, as Zeus stops runs past beta x the
  // best cost: `projected_cost` is the attempt's projected cost in the
  // class's unit (its energy so far over the share of its work done, per
  // declared sample). When that is more than `factor` x the mean cost of the
  // best measured batch size, and that batch size differs from `batch_size`,
  // returns it: the caller moves the attempt there. The projection is
  // recorded as an observation of `batch_size`, and the attempt is no longer
  // in flight (its final cost mixes two batch sizes and teaches nothing).
  // Otherwise 0.
  // Only batch sizes in [min, max] (the job's range) are candidates.
  int32_t CheckRunning(const std::string& job_class, const std::string& job_id,
                       int32_t batch_size, double projected_cost, double factor, int32_t min,
                       int32_t max);

  // Text of one class's state for the store; empty for an unknown class.
  std::string SerializeClass(const std::string& job_class) const;
  // Restores a class stored by `SerializeClass`, or a bare BatchSizeBandit
  // (stored before the sizer existed). DATA_LOSS for anything else; the
  // class is then unchanged.
  absl::Status ParseClass(const std::string& job_class, absl::string_view data);

  // The class's bandit, or nullptr.
  const BatchSizeBandit* Bandit(const std::string& job_class) const;
  size_t classes() const { return classes_.size(); }

 private:
  struct ClassState {
    BatchSizeBandit bandit;
    // Declared sizes seen: count and sum of natural logs.
    int64_t sizes = 0;
    double log_size_sum = 0;
    // job id -> batch size of its attempt in flight.
    std::map<std::string, int32_t> in_flight;
  };

  BatchSizeBanditOptions options_;
  std::map<std::string, ClassState> classes_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_BANDIT_BATCH_SIZER_H_
