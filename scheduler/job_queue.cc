#include "scheduler/job_queue.h"

#include <string>
#include <utility>
#include <vector>

#include "common/proto_time.h"

namespace joule {

JobQueue::Shape JobQueue::ShapeOf(const v1::JobSpec& spec) {
  return Shape{spec.replicas(), spec.resources().gpus(), spec.resources().cpus(),
               spec.resources().memory_bytes(), spec.resources().gpu_model(),
               spec.placement_profile()};
}

void JobQueue::Add(const v1::Job& job, int64_t number, absl::Time now) {
  if (job.has_not_before()) {
    const absl::Time not_before = FromProtoTime(job.not_before());
    if (not_before > now) {
      backoff_.emplace(not_before, job.id());
      return;
    }
  }
  std::pair<int64_t, std::string> entry{number, job.id()};
  if (queued_.insert(entry).second) by_shape_[ShapeOf(job.spec())].insert(std::move(entry));
}

void JobQueue::Remove(const v1::Job& job, int64_t number) {
  if (job.has_not_before()) backoff_.erase({FromProtoTime(job.not_before()), job.id()});
  const std::pair<int64_t, std::string> entry{number, job.id()};
  if (queued_.erase(entry) == 0) return;
  auto queue = by_shape_.find(ShapeOf(job.spec()));
  if (queue == by_shape_.end()) return;
  queue->second.erase(entry);
  if (queue->second.empty()) by_shape_.erase(queue);
}

std::vector<std::string> JobQueue::DueBackoffs(absl::Time now) {
  std::vector<std::string> due;
  while (!backoff_.empty() && backoff_.begin()->first <= now) {
    due.push_back(backoff_.begin()->second);
    backoff_.erase(backoff_.begin());
  }
  return due;
}

JobQueue::Walk::Walk(const JobQueue* queue) : queue_(queue) {
  for (const auto& [shape, jobs] : queue->by_shape_) {
    heads_.emplace(jobs.begin()->first, jobs.begin()->second, shape);
  }
}

std::optional<JobQueue::Entry> JobQueue::Walk::Next() {
  if (heads_.empty()) return std::nullopt;
  auto [number, job_id, shape] = *heads_.begin();
  heads_.erase(heads_.begin());
  return Entry{number, std::move(job_id), std::move(shape)};
}

void JobQueue::Walk::Continue(const Entry& entry) {
  auto jobs = queue_->by_shape_.find(entry.shape);
  if (jobs == queue_->by_shape_.end()) return;
  auto next = jobs->second.upper_bound({entry.number, entry.job_id});
  if (next != jobs->second.end()) heads_.emplace(next->first, next->second, entry.shape);
}

}  // namespace joule
