#include "scheduler/grpc_services.h"

#include <deque>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/leader_redirect.h"
#include "common/log.h"

namespace joule {
namespace {

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context,
                                absl::StatusOr<T> result, T* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (result.ok()) {
    *response = *std::move(result);
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(ToGrpcStatus(result.status()));
  }
  return reactor;
}

// A streaming call refused at once (this replica is a standby).
template <typename Base>
class Refused : public Base {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// Streams a job's states to one client until the job ends or the client
// goes away. Writes are queued because the scheduler calls the watcher with
// its lock held and must not wait for the network.
//
// Thread-safe; state guarded by mu_. gRPC never runs these reactions inline
// from StartWrite/Finish, so calling them with mu_ held cannot re-enter.
class WatchReactor : public grpc::ServerWriteReactor<v1::Job> {
 public:
  WatchReactor(Scheduler* scheduler, const std::string& job_id)
      : scheduler_(scheduler) {
    absl::StatusOr<int64_t> handle = scheduler_->WatchJob(
        job_id, [this](const v1::Job& job) { Enqueue(job); });
    absl::MutexLock lock(&mu_);
    if (!handle.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(handle.status()));
      return;
    }
    handle_ = *handle;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    int64_t handle;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
    }
    if (handle != 0) scheduler_->Unwatch(handle);
    delete this;
  }

 private:
  void Enqueue(const v1::Job& job) {
    absl::MutexLock lock(&mu_);
    if (finished_ || last_enqueued_final_) return;
    queue_.push_back(job);
    last_enqueued_final_ = IsFinal(job.state());
    WriteNextLocked();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (queue_.empty()) {
      if (last_enqueued_final_) FinishLocked(grpc::Status::OK);
      return;
    }
    writing_ = true;
    StartWrite(&queue_.front());
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  Scheduler* const scheduler_;
  absl::Mutex mu_;
  int64_t handle_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::Job> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool last_enqueued_final_ ABSL_GUARDED_BY(mu_) = false;
};

// One agent's stream: reads AgentMessages into the scheduler and writes
// commands queued by it. The first message must be a Register.
//
// Thread-safe; write state guarded by mu_. Lock order: the scheduler's lock,
// then mu_ (Send is called with the scheduler's lock held).
class AgentStreamReactor
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>,
      public AgentLink {
 public:
  AgentStreamReactor(Scheduler* scheduler, std::string peer)
      : scheduler_(scheduler), peer_(std::move(peer)) {
    StartRead(&incoming_);
  }

  void Send(const v1::SchedulerCommand& command) override {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    queue_.push_back(command);
    WriteNextLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close(grpc::Status::OK);
      return;
    }
    absl::Status status;
    if (!registered_) {
      if (incoming_.msg_case() != v1::AgentMessage::kRegister) {
        status = absl::FailedPreconditionError(
            "the first message on an agent stream must be register");
      } else {
        status = scheduler_->OnAgentRegister(this, incoming_.register_());
        registered_ = status.ok();
      }
    } else {
      status = scheduler_->OnAgentMessage(this, incoming_);
    }
    if (!status.ok()) {
      JLOG(WARNING) << "closing agent stream from " << peer_ << ": " << status;
      Close(ToGrpcStatus(status));
      return;
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
    // On failure the peer is gone; reading fails too and closes the stream.
    if (!ok) queue_.clear();
    WriteNextLocked();
  }

  void OnDone() override { delete this; }

 private:
  // Detaches from the scheduler first, so no Send comes after Finish.
  void Close(const grpc::Status& status) {
    if (registered_) scheduler_->OnAgentDisconnect(this);
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    closing_ = true;
    final_status_ = status;
    if (!writing_) {
      queue_.clear();
      Finish(final_status_);
    }
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_) return;
    if (queue_.empty() || closing_) {
      if (closing_) {
        queue_.clear();
        Finish(final_status_);
      }
      return;
    }
    writing_ = true;
    StartWrite(&queue_.front());
  }

  Scheduler* const scheduler_;
  const std::string peer_;
  // Reads are sequential: only the read reaction touches these.
  v1::AgentMessage incoming_;
  bool registered_ = false;

  absl::Mutex mu_;
  std::deque<v1::SchedulerCommand> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context,
                                      const ServingState& serving) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(NotLeaderStatus(context, serving.leader_address()));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* SchedulerGrpcService::SubmitJob(
    grpc::CallbackServerContext* context, const v1::SubmitJobRequest* request,
    v1::Job* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  return Reply(context, scheduler->SubmitJob(request->spec(), request->request_id()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetJob(
    grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
    v1::Job* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  return Reply(context, scheduler->GetJob(request->job_id()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ListJobs(
    grpc::CallbackServerContext* context, const v1::ListJobsRequest* request,
    v1::ListJobsResponse* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  std::set<v1::JobState> states;
  for (int state : request->states()) {
    states.insert(static_cast<v1::JobState>(state));
  }
  v1::ListJobsResponse out;
  for (v1::Job& job : scheduler->ListJobs(states)) {
    *out.add_jobs() = std::move(job);
  }
  return Reply(context, absl::StatusOr<v1::ListJobsResponse>(std::move(out)),
               response);
}

grpc::ServerWriteReactor<v1::Job>* SchedulerGrpcService::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) {
    return new Refused<grpc::ServerWriteReactor<v1::Job>>(
        NotLeaderStatus(context, serving_->leader_address()));
  }
  return new WatchReactor(scheduler, request->job_id());
}

grpc::ServerUnaryReactor* SchedulerGrpcService::CancelJob(
    grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
    v1::Job* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  return Reply(context,
               scheduler->CancelJob(request->job_id(), request->reason()),
               response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ListNodes(
    grpc::CallbackServerContext* context, const v1::ListNodesRequest* request,
    v1::ListNodesResponse* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  v1::ListNodesResponse out;
  for (v1::Node& node : scheduler->ListNodes()) {
    *out.add_nodes() = std::move(node);
  }
  return Reply(context, absl::StatusOr<v1::ListNodesResponse>(std::move(out)),
               response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetNode(
    grpc::CallbackServerContext* context, const v1::GetNodeRequest* request,
    v1::Node* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  return Reply(context, scheduler->GetNode(request->name()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ExplainJob(
    grpc::CallbackServerContext* context, const v1::ExplainJobRequest* request,
    v1::JobExplanation* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  return Reply(context, scheduler->ExplainJob(request->job_id()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::SetNodeCap(
    grpc::CallbackServerContext* context, const v1::SetNodeCapRequest* request,
    v1::SetNodeCapResponse* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(scheduler->SetNodeCap(request->node(), request->cap())));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetTaskLogs(
    grpc::CallbackServerContext* context, const v1::GetTaskLogsRequest* request,
    v1::GetTaskLogsResponse* response) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) return RefuseUnary(context, *serving_);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scheduler->GetTaskLogs(
      *request, [reactor, response](
                    absl::StatusOr<v1::GetTaskLogsResponse> result) {
        if (result.ok()) {
          *response = *std::move(result);
          reactor->Finish(grpc::Status::OK);
        } else {
          reactor->Finish(ToGrpcStatus(result.status()));
        }
      });
  return reactor;
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>*
AgentGrpcService::Connect(grpc::CallbackServerContext* context) {
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) {
    return new Refused<grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>>(
        NotLeaderStatus(context, serving_->leader_address()));
  }
  return new AgentStreamReactor(scheduler, context->peer());
}

}  // namespace joule
