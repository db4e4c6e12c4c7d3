#ifndef JOULE_SCHEDULER_GRPC_SERVICES_H_
#define JOULE_SCHEDULER_GRPC_SERVICES_H_

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "scheduler/auth/authenticator.h"
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

// Receive limits. gRPC C++ has one limit per server, set to the largest
// message any method takes (an agent's logs reply: two tails of at most
// 4 MiB); methods whose messages are smaller check their own limit.
// SubmitJob takes raw bytes and checks their size before decoding, since a
// small message of many empty strings decodes to a large object.
inline constexpr int kMaxServerReceiveBytes = 9 << 20;
// The largest valid JobSpec is about 530 KiB (256 KiB command line, 256 KiB
// env, labels); 1 MiB leaves room.
inline constexpr size_t kMaxSubmitJobBytes = 1 << 20;

// The client API over gRPC: authenticates the caller, asks the access
// policy, converts requests, calls the Scheduler, maps absl::Status to
// grpc::Status. Callback API: no thread per call.
class SchedulerGrpcService final
    : public v1::SchedulerService::WithRawCallbackMethod_SubmitJob<
          v1::SchedulerService::CallbackService> {
 public:
  SchedulerGrpcService(const ServingState* serving, const Authenticator* auth)
      : serving_(serving), auth_(auth) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
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
  // The leading scheduler and the authenticated caller, or the reactor
  // already finished with the reason (not the leader, no credentials).
  struct Call {
    Scheduler* scheduler = nullptr;
    Identity caller;
    grpc::ServerUnaryReactor* refused = nullptr;
  };
  Call Begin(grpc::CallbackServerContext* context) const;

  const ServingState* const serving_;
  const Authenticator* const auth_;
};

// The agent stream endpoint. One reactor per agent stream; thousands of
// streams share gRPC's callback threads.
// A stream is bound to the node its client certificate names: it may only
// register, report and receive work as that node; anything else is refused
// with PERMISSION_DENIED and a log line, so a node's running stream is never
// displaced by another identity. A stream that has not registered within
// `register_timeout` is closed (DEADLINE_EXCEEDED).
class AgentGrpcService final : public v1::AgentService::CallbackService {
 public:
  AgentGrpcService(const ServingState* serving, const Authenticator* auth,
                   absl::Duration register_timeout = absl::Seconds(5))
      : serving_(serving), auth_(auth), register_timeout_(register_timeout) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  const ServingState* const serving_;
  const Authenticator* const auth_;
  const absl::Duration register_timeout_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_GRPC_SERVICES_H_
