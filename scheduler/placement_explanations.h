#ifndef JOULE_SCHEDULER_PLACEMENT_EXPLANATIONS_H_
#define JOULE_SCHEDULER_PLACEMENT_EXPLANATIONS_H_

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/job_queue.h"
#include "scheduler/placement/pipeline.h"

namespace joule {

// What `joulectl explain` shows: the last placement cycle's view of each
// job (memory only; a restarted scheduler explains from its next cycle).
//
// 1. Each cycle records the explanation of every job it examined (Build,
//    Record) and, per request shape, the explanation of the shape's first
//    job that found no room (ShapeFailed): a pending job the cycle did not
//    reach is explained by its shape's, the newest verdict on it.
// 2. The most recent kWholeKept finished jobs keep their top candidates;
//    older ones keep only the chosen node's scores (Finished), so that a
//    long-running scheduler does not hold candidates for every job ever
//    run.
// 3. Of adds what the job itself says: its retry backoff, and the energy
//    brain's cap and batch-size decisions.
//
// Thread-compatible: owned by the Scheduler and called with its lock held.
// Explanations are shared immutable objects: jobs of one cycle with the same
// outcome share one.
class PlacementExplanations {
 public:
  static constexpr size_t kWholeKept = 1000;

  // The explanation of one placement attempt of `job_id` under `profile`.
  static std::shared_ptr<const v1::JobExplanation> Build(const std::string& job_id,
                                                         const PlacementResult& result,
                                                         const std::string& profile);

  // A new cycle: the verdicts per shape of the last one no longer hold.
  void CycleStarted() { failed_shapes_.clear(); }
  void Record(const std::string& job_id, std::shared_ptr<const v1::JobExplanation> explanation) {
    by_job_[job_id] = std::move(explanation);
  }
  void ShapeFailed(const JobQueue::Shape& shape,
                   std::shared_ptr<const v1::JobExplanation> explanation) {
    failed_shapes_.emplace(shape, std::move(explanation));
  }
  // The job ended: its explanation is kept whole while it is among the
  // kWholeKept most recent.
  void Finished(const std::string& job_id);

  // The explanation of `job` at `now`.
  v1::JobExplanation Of(const v1::Job& job, absl::Time now) const;

 private:
  // Keeps only the chosen candidate of the job's explanation.
  void Trim(const std::string& job_id);

  absl::flat_hash_map<std::string, std::shared_ptr<const v1::JobExplanation>> by_job_;
  std::map<JobQueue::Shape, std::shared_ptr<const v1::JobExplanation>> failed_shapes_;
  // Finished jobs, oldest first, whose explanations are still whole.
  std::deque<std::string> finished_whole_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_EXPLANATIONS_H_
