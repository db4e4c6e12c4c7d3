#include "scheduler/job_queue.h"

#include <optional>
#include <string>
#include <vector>

#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

v1::Job Job(int number, int gpus, int replicas = 1) {
  v1::Job job;
  job.set_id("job-" + std::to_string(number));
  job.mutable_spec()->set_replicas(replicas);
  job.mutable_spec()->mutable_resources()->set_gpus(gpus);
  job.mutable_spec()->mutable_resources()->set_cpus(1);
  return job;
}

std::vector<std::string> WalkAll(const JobQueue& queue, bool continue_shapes) {
  std::vector<std::string> order;
  JobQueue::Walk walk = queue.StartWalk();
  while (std::optional<JobQueue::Entry> entry = walk.Next()) {
    order.push_back(entry->job_id);
    if (continue_shapes) walk.Continue(*entry);
  }
  return order;
}

TEST(JobQueueTest, WalksShapeHeadsInSubmissionOrder) {
  JobQueue queue;
  for (int n : {1, 3, 5}) queue.Add(Job(n, 1), n, kNow);
  for (int n : {2, 4}) queue.Add(Job(n, 8), n, kNow);
  EXPECT_EQ(queue.size(), 5u);
  // Continuing every shape visits every job in submission order.
  EXPECT_THAT(WalkAll(queue, true), ElementsAre("job-1", "job-2", "job-3", "job-4", "job-5"));
  // A shape not continued (it found no room) is dropped: only the heads.
  EXPECT_THAT(WalkAll(queue, false), ElementsAre("job-1", "job-2"));
}

TEST(JobQueueTest, RemoveDuringAWalkKeepsTheWalkGoing) {
  JobQueue queue;
  for (int n : {1, 2, 3}) queue.Add(Job(n, 1), n, kNow);
  JobQueue::Walk walk = queue.StartWalk();
  std::optional<JobQueue::Entry> first = walk.Next();
  ASSERT_TRUE(first.has_value());
  queue.Remove(Job(1, 1), 1);  // placed
  walk.Continue(*first);
  std::optional<JobQueue::Entry> second = walk.Next();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->job_id, "job-2");
  EXPECT_EQ(queue.size(), 2u);
}

TEST(JobQueueTest, BackoffHoldsAJobUntilItsNotBefore) {
  JobQueue queue;
  v1::Job retry = Job(7, 2);
  *retry.mutable_not_before() = ToProtoTime(kNow + absl::Minutes(5));
  queue.Add(retry, 7, kNow);
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.backoff_size(), 1u);
  EXPECT_THAT(queue.DueBackoffs(kNow + absl::Minutes(4)), IsEmpty());
  EXPECT_THAT(queue.DueBackoffs(kNow + absl::Minutes(5)), ElementsAre("job-7"));
  EXPECT_EQ(queue.backoff_size(), 0u);
  queue.Add(retry, 7, kNow + absl::Minutes(5));
  EXPECT_EQ(queue.size(), 1u);
  // Remove takes it out of backoff too.
  JobQueue other;
  other.Add(retry, 7, kNow);
  other.Remove(retry, 7);
  EXPECT_EQ(other.backoff_size(), 0u);
}

TEST(JobQueueTest, AddingTwiceQueuesOnce) {
  JobQueue queue;
  queue.Add(Job(1, 1), 1, kNow);
  queue.Add(Job(1, 1), 1, kNow);
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_THAT(WalkAll(queue, true), ElementsAre("job-1"));
}

}  // namespace
}  // namespace joule
