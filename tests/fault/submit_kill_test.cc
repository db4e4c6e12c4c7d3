// kill -9 of a real joule-scheduler in the middle of a burst of concurrent
// submissions to its embedded store (group commit: one fsync for many
// submissions), then a restart on the same data directory: every job whose
// submission was acknowledged is there, with the spec it was submitted with,
// and no submission made two jobs.
//
// Prints one line per round for the fault report:
//   FAULT scenario=submit-burst-kill-9 round=N acked=N recovered=N in_flight_kept=N

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "tests/e2e/test_cluster.h"

namespace joule {
namespace {

constexpr int kClients = 8;
constexpr int kRounds = 3;

// What the clients were told, from all rounds. Thread-safe; guarded by mu.
struct Acks {
  absl::Mutex mu;
  // Job id -> the name its spec was submitted with.
  std::map<std::string, std::string> acked ABSL_GUARDED_BY(mu);
  // Names of submissions that got no answer (in flight at the kill).
  std::set<std::string> unanswered ABSL_GUARDED_BY(mu);
  int count ABSL_GUARDED_BY(mu) = 0;
};

std::unique_ptr<v1::SchedulerService::Stub> Connect(const std::string& address) {
  return v1::SchedulerService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

// Submits jobs named "r<round>-c<client>-<i>" (each with its own
// request_id) until one fails or `stop` is set.
void SubmitUntilStopped(const std::string& address, int round, int client,
                        const std::atomic<bool>& stop, Acks* acks) {
  std::unique_ptr<v1::SchedulerService::Stub> stub = Connect(address);
  for (int i = 0; !stop.load(); ++i) {
    const std::string name = absl::StrFormat("r%d-c%d-%d", round, client, i);
    v1::SubmitJobRequest request;
    request.set_request_id(name);
    v1::JobSpec* spec = request.mutable_spec();
    spec->set_name(name);
    spec->set_command("/bin/true");
    spec->mutable_resources()->set_cpus(1);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(10)));
    v1::Job job;
    const grpc::Status status = stub->SubmitJob(&context, request, &job);
    absl::MutexLock lock(&acks->mu);
    if (!status.ok()) {
      // Refused or cut off by the kill: the outcome is the store's.
      acks->unanswered.insert(name);
      return;
    }
    acks->acked[job.id()] = name;
    ++acks->count;
  }
}

absl::StatusOr<v1::ListJobsResponse> ListAll(const std::string& address) {
  std::unique_ptr<v1::SchedulerService::Stub> stub = Connect(address);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(30)));
  v1::ListJobsResponse response;
  const grpc::Status status = stub->ListJobs(&context, v1::ListJobsRequest(), &response);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return response;
}

TEST(SubmitKillTest, EveryAcknowledgedSubmissionSurvivesKill9MidBurst) {
  TestCluster cluster("submit-kill");
  cluster.UseInsecure();
  cluster.StartScheduler();
  Acks acks;
  for (int round = 1; round <= kRounds; ++round) {
    int acked_before = 0;
    {
      absl::MutexLock lock(&acks.mu);
      acked_before = acks.count;
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int client = 0; client < kClients; ++client) {
      clients.emplace_back(SubmitUntilStopped, cluster.address(), round, client,
                           std::cref(stop), &acks);
    }
    // Mid-burst: after some acknowledgements, with the clients still going.
    const int kill_after = acked_before + 100 * round;
    const bool burst = WaitFor(
        [&] {
          absl::MutexLock lock(&acks.mu);
          return acks.count >= kill_after;
        },
        absl::Seconds(60));
    cluster.KillScheduler();
    stop = true;
    for (std::thread& client : clients) client.join();
    ASSERT_TRUE(burst) << "round " << round << ": fewer than " << kill_after
                       << " acknowledged submissions in 60 s";

    cluster.StartScheduler();
    absl::StatusOr<v1::ListJobsResponse> listed = ListAll(cluster.address());
    ASSERT_TRUE(listed.ok()) << listed.status();
    std::map<std::string, std::string> recovered;
    std::map<std::string, int> per_name;
    for (const v1::Job& job : listed->jobs()) {
      recovered[job.id()] = job.spec().name();
      ++per_name[job.spec().name()];
    }
    absl::MutexLock lock(&acks.mu);
    int missing = 0;
    for (const auto& [id, name] : acks.acked) {
      auto it = recovered.find(id);
      if (it == recovered.end()) {
        ++missing;
        ADD_FAILURE() << "round " << round << ": acknowledged " << id << " (" << name
                      << ") is gone after kill -9";
      } else {
        EXPECT_EQ(it->second, name) << id;
      }
    }
    for (const auto& [name, count] : per_name) {
      EXPECT_EQ(count, 1) << "submission " << name << " made " << count << " jobs";
    }
    // Jobs the store kept whose submitter never heard back: in the commit
    // the kill interrupted after its fsync, or refused and not yet deleted.
    int in_flight_kept = 0;
    for (const auto& [id, name] : recovered) {
      if (acks.unanswered.count(name) > 0) ++in_flight_kept;
    }
    EXPECT_EQ(missing, 0);
    std::cout << absl::StrFormat(
                     "FAULT scenario=submit-burst-kill-9 round=%d acked=%d recovered=%d "
                     "in_flight_kept=%d",
                     round, static_cast<int>(acks.acked.size()),
                     static_cast<int>(recovered.size()), in_flight_kept)
              << std::endl;
  }
}

}  // namespace
}  // namespace joule
