#ifndef JOULE_SCHEDULER_GRPC_SERVICES_H_
#define JOULE_SCHEDULER_GRPC_SERVICES_H_

#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "scheduler/scheduler.h"

namespace joule {

// The client API over gRPC: converts requests, calls the Scheduler, maps
// absl::Status to grpc::Status. Callback API: no thread per call.
class SchedulerGrpcService final : public v1::SchedulerService::CallbackService {
 public:
  explicit SchedulerGrpcService(Scheduler* scheduler) : scheduler_(scheduler) {}

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
  Scheduler* const scheduler_;
};

// The agent stream endpoint. One reactor per agent stream; thousands of
// streams share gRPC's callback threads.
class AgentGrpcService final : public v1::AgentService::CallbackService {
 public:
  explicit AgentGrpcService(Scheduler* scheduler) : scheduler_(scheduler) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Scheduler* const scheduler_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_GRPC_SERVICES_H_
