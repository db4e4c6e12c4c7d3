#include "scheduler/grpc_services.h"

#include <deque>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/leader_redirect.h"
#include "common/log.h"
#include "grpcpp/alarm.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "scheduler/auth/access_policy.h"

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
// commands queued by it. The first message must be a Register, for the node
// the stream is bound to (`bound_node`; "" when insecure: any node), within
// the register timeout.
//
// Thread-safe; write state guarded by mu_. Lock order: the scheduler's lock,
// then mu_ (Send is called with the scheduler's lock held). The register
// deadline's alarm reaches the reactor through `guard_`, which OnDone clears
// before the reactor is deleted.
class AgentStreamReactor
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>,
      public AgentLink {
 public:
  AgentStreamReactor(Scheduler* scheduler, grpc::CallbackServerContext* context,
                     std::string peer, std::string bound_node,
                     absl::Duration register_timeout)
      : scheduler_(scheduler),
        context_(context),
        peer_(std::move(peer)),
        bound_node_(std::move(bound_node)),
        guard_(std::make_shared<Guard>()) {
    guard_->reactor = this;
    std::shared_ptr<Guard> guard = guard_;
    register_alarm_.Set(absl::ToChronoTime(absl::Now() + register_timeout),
                        [guard, register_timeout](bool fired) {
                          absl::MutexLock lock(&guard->mu);
                          if (fired && guard->reactor != nullptr) {
                            guard->reactor->OnRegisterDeadline(register_timeout);
                          }
                        });
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
    if (!registered_.load()) {
      if (incoming_.msg_case() != v1::AgentMessage::kRegister) {
        status = absl::FailedPreconditionError(
            "the first message on an agent stream must be register");
      } else if (!bound_node_.empty() &&
                 incoming_.register_().node().name() != bound_node_) {
        status = absl::PermissionDeniedError(absl::StrCat(
            "this stream's certificate names node ", bound_node_,
            "; it cannot register as node ", incoming_.register_().node().name()));
      } else {
        status = scheduler_->OnAgentRegister(this, incoming_.register_());
        registered_ = status.ok();
      }
    } else {
      status = scheduler_->OnAgentMessage(this, incoming_);
    }
    if (!status.ok()) {
      JLOG(WARNING) << "closing agent stream from " << peer_
                    << (bound_node_.empty() ? "" : absl::StrCat(" (node ", bound_node_, ")"))
                    << ": " << status;
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

  void OnDone() override {
    {
      absl::MutexLock lock(&guard_->mu);
      guard_->reactor = nullptr;
    }
    delete this;
  }

 private:
  struct Guard {
    absl::Mutex mu;
    AgentStreamReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Runs on the alarm's thread. Cancelling makes the pending read fail, so
  // the stream is closed by the read path, which owns the registration.
  void OnRegisterDeadline(absl::Duration timeout) {
    if (registered_.load()) return;
    JLOG(WARNING) << "closing agent stream from " << peer_ << ": no register within "
                  << timeout;
    context_->TryCancel();
  }

  // Detaches from the scheduler first, so no Send comes after Finish.
  void Close(const grpc::Status& status) {
    if (registered_.load()) scheduler_->OnAgentDisconnect(this);
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
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  const std::string bound_node_;
  // Reads are sequential: only the read reaction touches incoming_.
  v1::AgentMessage incoming_;
  // Written by the read reaction, read by the register alarm too.
  std::atomic<bool> registered_{false};
  std::shared_ptr<Guard> guard_;
  grpc::Alarm register_alarm_;

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

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context,
                                  const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

SchedulerGrpcService::Call SchedulerGrpcService::Begin(
    grpc::CallbackServerContext* context) const {
  Call call;
  absl::StatusOr<Identity> caller = auth_->AuthenticateClient(*context);
  if (!caller.ok()) {
    JLOG(WARNING) << "refused a call from " << context->peer() << ": " << caller.status();
    call.refused = Refuse(context, caller.status());
    return call;
  }
  call.caller = *std::move(caller);
  call.scheduler = serving_->scheduler();
  if (call.scheduler == nullptr) call.refused = RefuseUnary(context, *serving_);
  return call;
}

grpc::ServerUnaryReactor* SchedulerGrpcService::SubmitJob(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  if (request->Length() > kMaxSubmitJobBytes) {
    return Refuse(context, absl::ResourceExhaustedError(absl::StrCat(
                               "SubmitJob request: ", request->Length(),
                               " bytes, at most ", kMaxSubmitJobBytes)));
  }
  v1::SubmitJobRequest parsed;
  {
    grpc::ByteBuffer copy(*request);
    grpc::ProtoBufferReader reader(&copy);
    if (!parsed.ParseFromZeroCopyStream(&reader)) {
      return Refuse(context, absl::InvalidArgumentError("SubmitJob request does not parse"));
    }
  }
  if (parsed.request_id().size() > 128) {
    return Refuse(context, absl::InvalidArgumentError(absl::StrCat(
                               "request_id: ", parsed.request_id().size(),
                               " bytes, at most 128")));
  }
  v1::JobSpec spec = std::move(*parsed.mutable_spec());
  if (absl::Status allowed = AuthorizeSubmit(call.caller, &spec); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  // Answered from the store write's completion: no callback thread waits
  // for the commit. The reactor and `response` live until Finish.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  call.scheduler->SubmitJobAsync(
      std::move(spec), ScopedRequestId(call.caller, parsed.request_id()),
      [reactor, response](absl::StatusOr<v1::Job> job) {
        if (!job.ok()) {
          reactor->Finish(ToGrpcStatus(job.status()));
          return;
        }
        bool own = false;
        reactor->Finish(grpc::SerializationTraits<v1::Job>::Serialize(*job, response, &own));
      });
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetJob(
    grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
    v1::Job* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  absl::StatusOr<v1::Job> job = call.scheduler->GetJob(request->job_id());
  if (job.ok()) {
    if (absl::Status allowed = AuthorizeJob(call.caller, *job, "get"); !allowed.ok()) {
      return Refuse(context, allowed);
    }
    RedactForViewer(call.caller, &*job);
  }
  return Reply(context, std::move(job), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ListJobs(
    grpc::CallbackServerContext* context, const v1::ListJobsRequest* request,
    v1::ListJobsResponse* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  std::set<v1::JobState> states;
  for (int state : request->states()) {
    states.insert(static_cast<v1::JobState>(state));
  }
  v1::ListJobsResponse out;
  for (v1::Job& job : call.scheduler->ListJobs(states)) {
    if (!CanSeeJob(call.caller, job)) continue;
    *out.add_jobs() = std::move(job);
  }
  return Reply(context, absl::StatusOr<v1::ListJobsResponse>(std::move(out)),
               response);
}

grpc::ServerWriteReactor<v1::Job>* SchedulerGrpcService::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  using RefusedWatch = Refused<grpc::ServerWriteReactor<v1::Job>>;
  absl::StatusOr<Identity> caller = auth_->AuthenticateClient(*context);
  if (!caller.ok()) return new RefusedWatch(ToGrpcStatus(caller.status()));
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) {
    return new RefusedWatch(NotLeaderStatus(context, serving_->leader_address()));
  }
  absl::StatusOr<v1::Job> job = scheduler->GetJob(request->job_id());
  if (job.ok()) {
    if (absl::Status allowed = AuthorizeJob(*caller, *job, "watch"); !allowed.ok()) {
      return new RefusedWatch(ToGrpcStatus(allowed));
    }
  }
  return new WatchReactor(scheduler, request->job_id());
}

grpc::ServerUnaryReactor* SchedulerGrpcService::CancelJob(
    grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
    v1::Job* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  absl::StatusOr<v1::Job> job = call.scheduler->GetJob(request->job_id());
  if (!job.ok()) return Refuse(context, job.status());
  if (absl::Status allowed = AuthorizeJob(call.caller, *job, "cancel"); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  const std::string reason =
      request->reason().empty()
          ? absl::StrCat("cancelled by ", call.caller.user)
          : absl::StrCat(request->reason(), " (", call.caller.user, ")");
  return Reply(context, call.scheduler->CancelJob(request->job_id(), reason), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ListNodes(
    grpc::CallbackServerContext* context, const v1::ListNodesRequest* request,
    v1::ListNodesResponse* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  if (absl::Status allowed = AuthorizeOperator(call.caller, "list nodes"); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  v1::ListNodesResponse out;
  for (v1::Node& node : call.scheduler->ListNodes()) {
    *out.add_nodes() = std::move(node);
  }
  return Reply(context, absl::StatusOr<v1::ListNodesResponse>(std::move(out)),
               response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetNode(
    grpc::CallbackServerContext* context, const v1::GetNodeRequest* request,
    v1::Node* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  if (absl::Status allowed = AuthorizeOperator(call.caller, "get nodes"); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  return Reply(context, call.scheduler->GetNode(request->name()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::ExplainJob(
    grpc::CallbackServerContext* context, const v1::ExplainJobRequest* request,
    v1::JobExplanation* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  absl::StatusOr<v1::Job> job = call.scheduler->GetJob(request->job_id());
  if (!job.ok()) return Refuse(context, job.status());
  if (absl::Status allowed = AuthorizeJob(call.caller, *job, "explain"); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  return Reply(context, call.scheduler->ExplainJob(request->job_id()), response);
}

grpc::ServerUnaryReactor* SchedulerGrpcService::SetNodeCap(
    grpc::CallbackServerContext* context, const v1::SetNodeCapRequest* request,
    v1::SetNodeCapResponse* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  if (absl::Status allowed = AuthorizeOperator(call.caller, "set power caps"); !allowed.ok()) {
    return Refuse(context, allowed);
  }
  JLOG(INFO) << call.caller.user << " sets a cap on node " << request->node();
  return Refuse(context, call.scheduler->SetNodeCap(request->node(), request->cap()));
}

grpc::ServerUnaryReactor* SchedulerGrpcService::GetTaskLogs(
    grpc::CallbackServerContext* context, const v1::GetTaskLogsRequest* request,
    v1::GetTaskLogsResponse* response) {
  Call call = Begin(context);
  if (call.refused != nullptr) return call.refused;
  absl::StatusOr<v1::Job> job = call.scheduler->GetJob(request->job_id());
  if (!job.ok()) return Refuse(context, job.status());
  if (absl::Status allowed = AuthorizeJob(call.caller, *job, "read the logs of");
      !allowed.ok()) {
    return Refuse(context, allowed);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  call.scheduler->GetTaskLogs(
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
  using RefusedStream = Refused<grpc::ServerBidiReactor<v1::AgentMessage, v1::SchedulerCommand>>;
  absl::StatusOr<std::string> node = auth_->AuthenticateNode(*context);
  if (!node.ok()) {
    JLOG(WARNING) << "refused an agent stream from " << context->peer() << ": "
                  << node.status();
    return new RefusedStream(ToGrpcStatus(node.status()));
  }
  Scheduler* const scheduler = serving_->scheduler();
  if (scheduler == nullptr) {
    return new RefusedStream(NotLeaderStatus(context, serving_->leader_address()));
  }
  return new AgentStreamReactor(scheduler, context, context->peer(), *std::move(node),
                                register_timeout_);
}

}  // namespace joule
