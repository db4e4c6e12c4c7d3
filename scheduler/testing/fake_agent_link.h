#ifndef JOULE_SCHEDULER_TESTING_FAKE_AGENT_LINK_H_
#define JOULE_SCHEDULER_TESTING_FAKE_AGENT_LINK_H_

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "joule/v1/agent.pb.h"
#include "scheduler/node_registry.h"

namespace joule {
namespace scheduler_testing {

// The scheduler's end of an agent stream that only records what is sent,
// for tests of the node registry and the scheduler.
//
// Thread-safe; guarded by mu_ (the store writer's thread sends too).
class FakeAgentLink : public AgentLink {
 public:
  using CmdCase = v1::SchedulerCommand::CmdCase;

  void Send(const v1::SchedulerCommand& command) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(command);
  }

  // Every command, oldest first.
  std::vector<v1::SchedulerCommand> All() const {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

  // The commands of one kind, oldest first.
  std::vector<v1::SchedulerCommand> Of(CmdCase kind) const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::SchedulerCommand> out;
    for (const v1::SchedulerCommand& command : sent_) {
      if (command.cmd_case() == kind) out.push_back(command);
    }
    return out;
  }

  // Task ids of the StopTask commands, oldest first.
  std::vector<std::string> StoppedTaskIds() const {
    std::vector<std::string> out;
    for (const auto& command : Of(v1::SchedulerCommand::kStopTask)) {
      out.push_back(command.stop_task().task_id());
    }
    return out;
  }

  // Task ids of the AckTaskEvent commands, oldest first.
  std::vector<std::string> AckedTaskIds() const {
    std::vector<std::string> out;
    for (const auto& command : Of(v1::SchedulerCommand::kAckTaskEvent)) {
      out.push_back(command.ack_task_event().task_id());
    }
    return out;
  }

  void Clear() {
    absl::MutexLock lock(&mu_);
    sent_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::SchedulerCommand> sent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace scheduler_testing
}  // namespace joule

#endif  // JOULE_SCHEDULER_TESTING_FAKE_AGENT_LINK_H_
