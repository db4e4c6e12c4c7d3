#ifndef JOULE_SCHEDULER_BRAIN_EARLY_STOP_H_
#define JOULE_SCHEDULER_BRAIN_EARLY_STOP_H_

// Early stop (DESIGN.md section 4): follows the quality each task reports
// and says when a task's quality has not improved for the job's `patience`
// reports, as Keras's EarlyStopping callback and Zeus's early stopping do:
// an improvement is a report better than the best so far by more than
// `min_delta`, in the direction `higher_is_better` gives. Every other report
// counts towards the patience; the first report sets the best. The caller
// sends the stop hint and forgets the task when it ends.
//
// Threading: not thread-safe; owned by the scheduler and used under its lock.

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "joule/v1/job.pb.h"

namespace joule {

// Why a task should stop: its best quality and the reports since.
struct EarlyStopVerdict {
  double best = 0;
  int stale = 0;
};

class EarlyStopWatch {
 public:
  // One new quality report of `task_id` under `rule`. A verdict when the
  // task should stop now (the task is then forgotten); nullopt otherwise,
  // and always when the rule has no patience.
  std::optional<EarlyStopVerdict> Report(const std::string& task_id, const v1::EarlyStop& rule,
                                         double quality);

  // Forgets a task (it ended).
  void Forget(const std::string& task_id) { tracks_.erase(task_id); }

  size_t tasks() const { return tracks_.size(); }

 private:
  struct Track {
    double best = 0;
    int stale = 0;
  };
  absl::flat_hash_map<std::string, Track> tracks_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_BRAIN_EARLY_STOP_H_
