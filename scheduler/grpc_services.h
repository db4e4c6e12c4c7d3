#ifndef JOULE_SCHEDULER_GRPC_SERVICES_H_
#define JOULE_SCHEDULER_GRPC_SERVICES_H_

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "scheduler/scheduler.h"

namespace joule {

// Which Scheduler answers the API. With the embedded store it is there from
// the start. With etcd, a replica is a standby until it wins the election:
// until then every call is refused with UNAVAILABLE, "not the leader", and
// the leader's address in the `joule-leader` trailing metadata, which
// joulectl and agents follow. Once set, the scheduler stays (a deposed
// leader restarts its process instead).
class ServingState {
 public:
  ServingState() = default;
  explicit ServingState(Scheduler* scheduler) : scheduler_(scheduler) {}

  Scheduler* scheduler() const { return scheduler_.load(); }
  void Lead(Scheduler* scheduler) { scheduler_.store(scheduler); }

  // The leader's client address ("" while unknown).
  std::string leader_address() const {
    absl::MutexLock lock(&mu_);
    return leader_address_;
  }
  void set_leader_address(std::string address) {
    absl::MutexLock lock(&mu_);
    leader_address_ = std::move(address);
  }

 private:
  std::atomic<Scheduler*> scheduler_{nullptr};
  mutable absl::Mutex mu_;
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
};

// The client API over gRPC: converts requests, calls the Scheduler, maps
// absl::Status to grpc::Status. Callback API: no thread per call.
class SchedulerGrpcService final : public v1::SchedulerService::CallbackService {
 public:
  explicit SchedulerGrpcService(const ServingState* serving) : serving_(serving) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request,
                                   v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerWriteReactor<v1::Job>* WatchJob(
      grpc::CallbackServerContext* context,
      const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const v1::ListNodesRequest* request,
                                      v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* context,
                                    const v1::GetNodeRequest* request,
                                    v1::Node* response) override;
  grpc::ServerUnaryReactor* ExplainJob(grpc::CallbackServerContext* context,
                                       const v1::ExplainJobRequest* request,
                                       v1::JobExplanation* response) override;
  grpc::ServerUnaryReactor* SetNodeCap(grpc::CallbackServerContext* context,
                                       const v1::SetNodeCapRequest* request,
                                       v1::SetNodeCapResponse* response) override;
  grpc::ServerUnaryReactor* GetTaskLogs(
      grpc::CallbackServerContext* context,
      const v1::GetTaskLogsRequest* request,
      v1::GetTaskLogsResponse* response) override;

 private:
  const ServingState* const serving_;
};

// The agent stream endpoint. One reactor per agent stream; thousands of
// streams share gRPC's callback threads.
class AgentGrpcService final : public v1::AgentService::CallbackService {
 public:
  explicit AgentGrpcService(const ServingState* serving) : serving_(serving) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  const ServingState* const serving_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_GRPC_SERVICES_H_
