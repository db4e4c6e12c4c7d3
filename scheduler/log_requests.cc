#include "scheduler/log_requests.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace joule {

LogRequests::Completion LogRequests::Start(const v1::Job& job,
                                           const v1::GetTaskLogsRequest& request,
                                           absl::Time deadline, const NodeRegistry& nodes,
                                           Callback done) {
  if (request.max_bytes() < 0 || request.max_bytes() > kMaxBytes) {
    return [done] {
      done(absl::InvalidArgumentError(absl::StrCat("max_bytes: must be in [0, ", kMaxBytes, "]")));
    };
  }
  const int64_t max_bytes = request.max_bytes() == 0 ? kDefaultMaxBytes : request.max_bytes();
  Pending pending;
  pending.deadline = deadline;
  pending.done = done;
  const int64_t id = next_id_++;
  for (const v1::Task& task : job.tasks()) {
    const bool wanted = request.task_id().empty() ? task.attempt() == job.attempts()
                                                  : task.task_id() == request.task_id();
    if (!wanted) continue;
    v1::TaskLogs* logs = pending.response.add_logs();
    logs->set_task_id(task.task_id());
    logs->set_node(task.node());
    const NodeRecord* node = nodes.Find(task.node());
    if (node == nullptr || !node->connected()) {
      logs->set_error(absl::StrCat("node ", task.node(), " is down"));
      continue;
    }
    const std::string request_id = absl::StrCat(id, "/", task.task_id());
    pending.outstanding[request_id] = pending.response.logs_size() - 1;
    v1::SchedulerCommand command;
    command.mutable_fetch_logs()->set_request_id(request_id);
    command.mutable_fetch_logs()->set_task_id(task.task_id());
    command.mutable_fetch_logs()->set_max_bytes(max_bytes);
    node->link->Send(command);
  }
  if (!request.task_id().empty() && pending.response.logs_size() == 0) {
    return [done, request] {
      done(absl::NotFoundError(absl::StrCat("task ", request.task_id(), " not found in job ",
                                            request.job_id())));
    };
  }
  if (pending.outstanding.empty()) {
    return [done, response = std::move(pending.response)] { done(response); };
  }
  pending_[id] = std::move(pending);
  return nullptr;
}

LogRequests::Completion LogRequests::OnReply(absl::string_view node, const v1::LogsReply& reply) {
  int64_t id = 0;
  const absl::string_view request_id = reply.request_id();
  if (!absl::SimpleAtoi(request_id.substr(0, request_id.find('/')), &id)) return nullptr;
  auto pending = pending_.find(id);
  if (pending == pending_.end()) return nullptr;  // Late reply.
  auto slot = pending->second.outstanding.find(reply.request_id());
  if (slot == pending->second.outstanding.end()) return nullptr;
  v1::TaskLogs* logs = pending->second.response.mutable_logs(slot->second);
  // Only the node that runs the task may answer for it.
  if (logs->node() != node) {
    JLOG(WARNING) << "node " << node << " answered a logs request for " << reply.task_id()
                  << " on " << logs->node() << "; ignored";
    return nullptr;
  }
  logs->set_stdout(reply.stdout());
  logs->set_stderr(reply.stderr());
  logs->set_truncated(reply.truncated());
  logs->set_error(reply.error());
  pending->second.outstanding.erase(slot);
  if (!pending->second.outstanding.empty()) return nullptr;
  Completion completion = [done = std::move(pending->second.done),
                           response = std::move(pending->second.response)] { done(response); };
  pending_.erase(pending);
  return completion;
}

std::vector<LogRequests::Completion> LogRequests::Expire(absl::Time now) {
  std::vector<Completion> completions;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    for (const auto& [request_id, index] : it->second.outstanding) {
      it->second.response.mutable_logs(index)->set_error("timed out waiting for the agent");
    }
    completions.push_back([done = std::move(it->second.done),
                           response = std::move(it->second.response)] { done(response); });
    it = pending_.erase(it);
  }
  return completions;
}

}  // namespace joule
