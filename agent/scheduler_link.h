#ifndef JOULE_AGENT_SCHEDULER_LINK_H_
#define JOULE_AGENT_SCHEDULER_LINK_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "common/clock.h"
#include "common/scheduler_targets.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/agent.grpc.pb.h"

namespace joule {

// The agent's end of the stream to the scheduler: connects, registers,
// forwards commands, and sends queued messages. Messages queued while
// disconnected are dropped (telemetry is periodic; task outcomes are repeated
// in the next Register).
//
// The target may list several scheduler replicas, of which one leads; a
// standby ends the stream at once with UNAVAILABLE, naming the leader in the
// trailing metadata when it knows it (common/leader_redirect.h). Whenever the
// stream ends, the link:
//  1. picks the next target (SchedulerTargets): the leader named by the
//     stream's end, else the next address of the list;
//  2. waits: briefly (100 ms, jittered) to follow a hint or to try the
//     addresses left in this round; after a round in which every address
//     failed, with capped, jittered exponential backoff (100 ms doubling to
//     2 s, reset by a register ack), so that agents reach a new leader
//     within about 2 s of it serving;
//  3. connects and registers again.
//
// Thread-safe. Runs two threads per connection: the reader (which also
// connects, and alone uses targets_ and stubs_) and a writer draining the
// queue.
class SchedulerLink : public MessageSink {
 public:
  using RegisterFn = std::function<v1::Register()>;
  using CommandFn = std::function<void(const v1::SchedulerCommand&)>;

  // `targets`: the scheduler's HOST:PORT, or the comma-separated addresses
  // of all its replicas.
  SchedulerLink(std::string targets, const Clock* clock,
                RegisterFn make_register, CommandFn on_command);
  ~SchedulerLink() override;

  // How to reach the scheduler: TLS credentials (MakeClientTlsCredentials:
  // the scheduler's CA and this node's certificate) and the name expected
  // in the scheduler's certificate ("" for the target's host). Plaintext
  // when never called. Call before Start.
  void UseCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials,
                      std::string server_name);

  void Start();
  // Closes the stream and joins the threads.
  void Stop();
  // Queues a message for the scheduler; drops it when disconnected or when
  // the queue is full (a stuck scheduler must not grow the agent).
  void Send(const v1::AgentMessage& message) override;
  bool connected() const;
  int64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run();
  // One stream to `target`, from connecting to its end; returns the leader
  // named by the end of the stream, or "". Resets *backoff on a register ack.
  std::string RunStream(const std::string& target, absl::Duration* backoff);
  void WriteLoop(grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerCommand>* stream);
  v1::AgentService::Stub* StubFor(const std::string& target);

  const Clock* const clock_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::string server_name_;
  const RegisterFn make_register_;
  const CommandFn on_command_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> reconnects_{0};
  std::thread thread_;

  // Used by the reader thread only.
  SchedulerTargets targets_;
  std::map<std::string, std::unique_ptr<v1::AgentService::Stub>> stubs_;

  mutable absl::Mutex mu_;
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace joule

#endif  // JOULE_AGENT_SCHEDULER_LINK_H_
