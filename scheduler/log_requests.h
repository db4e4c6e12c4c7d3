#ifndef JOULE_SCHEDULER_LOG_REQUESTS_H_
#define JOULE_SCHEDULER_LOG_REQUESTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/node_registry.h"

namespace joule {

// Task-output requests on their way to agents (`joulectl logs`).
//
// 1. Start asks the agent of each wanted task for its output (FetchLogs,
//    request id "<request>/<task>"); a task whose node is down gets an
//    error entry at once.
// 2. OnReply fills the entry of the task the reply names, if it came from
//    the node that runs the task; the last reply answers the request.
// 3. Expire answers requests past their deadline, the entries still
//    outstanding marked as timed out.
// Callers get the answers as completions to run once they have released
// their lock: the callbacks may call back into the scheduler.
//
// Thread-compatible: owned by the Scheduler and called with its lock held.
class LogRequests {
 public:
  using Callback = std::function<void(absl::StatusOr<v1::GetTaskLogsResponse>)>;
  using Completion = std::function<void()>;

  static constexpr int64_t kDefaultMaxBytes = 64 << 10;
  static constexpr int64_t kMaxBytes = 4 << 20;

  // Starts `request` for `job`: by default the tasks of its latest attempt,
  // or the one task it names. Returns a completion when the request is
  // answered at once (a bad max_bytes, an unknown task, or no agent to
  // ask); else null, and `done` runs from OnReply or Expire.
  Completion Start(const v1::Job& job, const v1::GetTaskLogsRequest& request,
                   absl::Time deadline, const NodeRegistry& nodes, Callback done);
  // A reply from `node`'s agent; returns the completion of the request it
  // answered last, else null (late, unknown or from the wrong node).
  Completion OnReply(absl::string_view node, const v1::LogsReply& reply);
  // Answers the requests whose deadline is at or before `now`.
  std::vector<Completion> Expire(absl::Time now);

  size_t size() const { return pending_.size(); }

 private:
  struct Pending {
    absl::Time deadline;
    Callback done;
    v1::GetTaskLogsResponse response;
    // request id -> index into response.logs.
    std::map<std::string, int> outstanding;
  };
  std::map<int64_t, Pending> pending_;
  int64_t next_id_ = 1;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_LOG_REQUESTS_H_
