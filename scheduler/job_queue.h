#ifndef JOULE_SCHEDULER_JOB_QUEUE_H_
#define JOULE_SCHEDULER_JOB_QUEUE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "joule/v1/job.pb.h"

namespace joule {

// The pending jobs: in submission order (by job number), one queue per
// request shape, and a backoff set of jobs whose retry waits until their
// not_before.
//
// A placement cycle walks the queue through the heads of the per-shape
// queues in submission order (Walk): within a cycle the cluster only fills
// up, so a shape that found no room is dropped for the rest of the cycle,
// and a long queue costs one pipeline pass per placed job plus one per
// distinct shape, not one per job.
//
// Thread-compatible: the scheduler calls it under its lock.
class JobQueue {
 public:
  // What placement needs of a job: replicas, GPUs, CPUs and memory per
  // replica, GPU model, and the placement profile that places it. Jobs of
  // one shape fit or do not fit alike.
  using Shape = std::tuple<int32_t, int32_t, double, int64_t, std::string, std::string>;
  static Shape ShapeOf(const v1::JobSpec& spec);

  struct Entry {
    int64_t number = 0;
    std::string job_id;
    Shape shape;
  };

  // Queues a pending job, or, when its not_before lies after `now`, puts it
  // in backoff. `number` orders the queue (the job id's number).
  void Add(const v1::Job& job, int64_t number, absl::Time now);
  // Takes a job out of the queue and of backoff.
  void Remove(const v1::Job& job, int64_t number);
  // Takes the jobs whose backoff has passed out of backoff and returns
  // their ids, earliest first; the caller re-Adds the ones still pending.
  std::vector<std::string> DueBackoffs(absl::Time now);

  bool empty() const { return queued_.empty(); }
  size_t size() const { return queued_.size(); }
  size_t backoff_size() const { return backoff_.size(); }

  // One cycle's walk. Next returns the earliest head not yet taken; after a
  // job, Continue brings the next job of its shape into the walk (after a
  // placement, or when this job's own reason held it, e.g. energy
  // routing); without Continue the shape is dropped for the walk. The
  // queue may change meanwhile (placed jobs are Removed).
  class Walk {
   public:
    std::optional<Entry> Next();
    void Continue(const Entry& entry);

   private:
    friend class JobQueue;
    explicit Walk(const JobQueue* queue);

    const JobQueue* queue_;
    std::set<std::tuple<int64_t, std::string, Shape>> heads_;
  };
  Walk StartWalk() const { return Walk(this); }

 private:
  // (number, job id) of every queued job, and the same per shape.
  std::set<std::pair<int64_t, std::string>> queued_;
  std::map<Shape, std::set<std::pair<int64_t, std::string>>> by_shape_;
  std::set<std::pair<absl::Time, std::string>> backoff_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_JOB_QUEUE_H_
