#ifndef JOULE_AGENT_SCHEDULER_LINK_H_
#define JOULE_AGENT_SCHEDULER_LINK_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/agent.grpc.pb.h"

namespace joule {

// The agent's end of the stream to the scheduler: connects, registers,
// forwards commands, and sends queued messages; reconnects with capped,
// jittered exponential backoff (100 ms doubling to 5 s) whenever the stream
// ends. Messages queued while disconnected are dropped (telemetry is
// periodic; task outcomes are repeated in the next Register).
//
// Thread-safe. Runs two threads per connection: the reader (which also
// connects) and a writer draining the queue.
class SchedulerLink : public MessageSink {
 public:
  using RegisterFn = std::function<v1::Register()>;
  using CommandFn = std::function<void(const v1::SchedulerCommand&)>;

  SchedulerLink(std::string target, const Clock* clock,
                RegisterFn make_register, CommandFn on_command);
  ~SchedulerLink() override;

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
  void WriteLoop(grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerCommand>* stream);

  const std::string target_;
  const Clock* const clock_;
  const RegisterFn make_register_;
  const CommandFn on_command_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> reconnects_{0};
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace joule

#endif  // JOULE_AGENT_SCHEDULER_LINK_H_
