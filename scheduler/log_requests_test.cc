#include "scheduler/log_requests.h"

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/device_catalog.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/node_registry.h"
#include "scheduler/testing/fake_agent_link.h"

namespace joule {
namespace {

using scheduler_testing::FakeAgentLink;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kTimeout = absl::Seconds(10);

// Job "job-1", attempt 2: t-a1 (attempt 1) and t-a2 on node-a, t-b2 on
// node-b.
v1::Job TwoAttemptJob() {
  v1::Job job;
  job.set_id("job-1");
  job.set_attempts(2);
  const struct {
    const char* task_id;
    int32_t attempt;
    const char* node;
  } tasks[] = {{"t-a1", 1, "node-a"}, {"t-a2", 2, "node-a"}, {"t-b2", 2, "node-b"}};
  for (const auto& spec : tasks) {
    v1::Task* task = job.add_tasks();
    task->set_task_id(spec.task_id);
    task->set_attempt(spec.attempt);
    task->set_node(spec.node);
  }
  return job;
}

v1::GetTaskLogsRequest Request(const std::string& task_id = "", int64_t max_bytes = 0) {
  v1::GetTaskLogsRequest request;
  request.set_job_id("job-1");
  request.set_task_id(task_id);
  request.set_max_bytes(max_bytes);
  return request;
}

// The FetchLogs commands a link was sent, oldest first.
std::vector<v1::FetchLogs> Fetches(const FakeAgentLink& link) {
  std::vector<v1::FetchLogs> out;
  for (const v1::SchedulerCommand& command : link.Of(v1::SchedulerCommand::kFetchLogs)) {
    out.push_back(command.fetch_logs());
  }
  return out;
}

std::vector<std::string> FetchedTaskIds(const FakeAgentLink& link) {
  std::vector<std::string> out;
  for (const v1::FetchLogs& fetch : Fetches(link)) out.push_back(fetch.task_id());
  return out;
}

v1::LogsReply Reply(const v1::FetchLogs& fetch, const std::string& out) {
  v1::LogsReply reply;
  reply.set_request_id(fetch.request_id());
  reply.set_task_id(fetch.task_id());
  reply.set_stdout(out);
  return reply;
}

// The entry of `task_id` in `response`; fails the test when there is none.
v1::TaskLogs EntryOf(const v1::GetTaskLogsResponse& response, const std::string& task_id) {
  for (const v1::TaskLogs& logs : response.logs()) {
    if (logs.task_id() == task_id) return logs;
  }
  ADD_FAILURE() << "no entry for " << task_id << " in " << response.DebugString();
  return v1::TaskLogs();
}

class LogRequestsTest : public ::testing::Test {
 protected:
  LogRequestsTest() : nodes_(&catalog_) {
    RegisterNode("node-a", &link_a_);
    RegisterNode("node-b", &link_b_);
  }

  void RegisterNode(const std::string& name, FakeAgentLink* link) {
    v1::NodeInfo info;
    info.set_name(name);
    AgentLink* replaced = nullptr;
    nodes_.Register(link, info, kT0, &replaced);
  }

  // Starts `request` for `job` with its answer going to answers_.
  LogRequests::Completion Start(const v1::Job& job, const v1::GetTaskLogsRequest& request,
                                absl::Time deadline = kT0 + kTimeout) {
    return requests_.Start(job, request, deadline, nodes_,
                           [this](absl::StatusOr<v1::GetTaskLogsResponse> answer) {
                             answers_.push_back(std::move(answer));
                           });
  }

  // Runs `completion` and returns the one answer it gave.
  absl::StatusOr<v1::GetTaskLogsResponse> Run(const LogRequests::Completion& completion) {
    const size_t before = answers_.size();
    completion();
    EXPECT_THAT(answers_, SizeIs(before + 1));
    if (answers_.size() != before + 1) return absl::InternalError("no single answer");
    return answers_.back();
  }

  std::vector<GpuModelSpec> catalog_;
  NodeRegistry nodes_;
  FakeAgentLink link_a_;
  FakeAgentLink link_b_;
  LogRequests requests_;
  std::vector<absl::StatusOr<v1::GetTaskLogsResponse>> answers_;
};

TEST_F(LogRequestsTest, MaxBytesOutOfRangeIsAnsweredAtOnce) {
  for (const int64_t max_bytes : {int64_t{-1}, LogRequests::kMaxBytes + 1}) {
    SCOPED_TRACE(max_bytes);
    LogRequests::Completion completion = Start(TwoAttemptJob(), Request("", max_bytes));
    ASSERT_NE(completion, nullptr);
    // The answer waits for the caller to run the completion.
    EXPECT_THAT(answers_, IsEmpty());
    absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(answer.status().message(), HasSubstr("max_bytes"));
    answers_.clear();
  }
  EXPECT_THAT(link_a_.All(), IsEmpty());
  EXPECT_THAT(link_b_.All(), IsEmpty());
  EXPECT_EQ(requests_.size(), 0);
}

TEST_F(LogRequestsTest, MaxBytesReachesTheAgent) {
  const struct {
    int64_t requested;
    int64_t sent;
  } cases[] = {
      {0, 64 << 10},  // The default.
      {1000, 1000},
      {LogRequests::kMaxBytes, LogRequests::kMaxBytes},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.requested);
    link_a_.Clear();
    EXPECT_EQ(Start(TwoAttemptJob(), Request("t-a2", c.requested)), nullptr);
    const std::vector<v1::FetchLogs> fetches = Fetches(link_a_);
    ASSERT_THAT(fetches, SizeIs(1));
    EXPECT_EQ(fetches[0].task_id(), "t-a2");
    EXPECT_EQ(fetches[0].max_bytes(), c.sent);
  }
  EXPECT_EQ(LogRequests::kDefaultMaxBytes, 64 << 10);
}

TEST_F(LogRequestsTest, ByDefaultAsksForTheLatestAttemptsTasks) {
  EXPECT_EQ(Start(TwoAttemptJob(), Request()), nullptr);
  EXPECT_THAT(FetchedTaskIds(link_a_), ElementsAre("t-a2"));
  EXPECT_THAT(FetchedTaskIds(link_b_), ElementsAre("t-b2"));
  // One request id per task, under one request.
  const std::string id_a = Fetches(link_a_)[0].request_id();
  const std::string id_b = Fetches(link_b_)[0].request_id();
  EXPECT_THAT(id_a, ::testing::EndsWith("/t-a2"));
  EXPECT_THAT(id_b, ::testing::EndsWith("/t-b2"));
  EXPECT_EQ(id_a.substr(0, id_a.find('/')), id_b.substr(0, id_b.find('/')));
  EXPECT_EQ(requests_.size(), 1);
  EXPECT_THAT(answers_, IsEmpty());
}

TEST_F(LogRequestsTest, ANamedTaskOfAnOlderAttemptIsAsked) {
  EXPECT_EQ(Start(TwoAttemptJob(), Request("t-a1")), nullptr);
  EXPECT_THAT(FetchedTaskIds(link_a_), ElementsAre("t-a1"));
  EXPECT_THAT(link_b_.All(), IsEmpty());
}

TEST_F(LogRequestsTest, ATaskNotInTheJobIsNotFound) {
  LogRequests::Completion completion = Start(TwoAttemptJob(), Request("t-zz"));
  ASSERT_NE(completion, nullptr);
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(answer.status().message(), HasSubstr("t-zz"));
  EXPECT_THAT(answer.status().message(), HasSubstr("job-1"));
  EXPECT_THAT(link_a_.All(), IsEmpty());
  EXPECT_THAT(link_b_.All(), IsEmpty());
  EXPECT_EQ(requests_.size(), 0);
}

// One way for node-b's task t-b2 to have no agent to ask.
struct DownCase {
  std::string name;
  std::function<void(NodeRegistry&, v1::Job&)> take_down;
};

class LogRequestsDownNodeTest : public LogRequestsTest,
                                public ::testing::WithParamInterface<DownCase> {};

TEST_P(LogRequestsDownNodeTest, TheTaskGetsAnErrorAtOnce) {
  v1::Job job = TwoAttemptJob();
  GetParam().take_down(nodes_, job);
  const std::string down_node = job.tasks(2).node();

  // Only the task on the down node: answered at once.
  LogRequests::Completion completion = Start(job, Request("t-b2"));
  ASSERT_NE(completion, nullptr);
  EXPECT_EQ(requests_.size(), 0);
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_THAT(answer->logs(), SizeIs(1));
  EXPECT_EQ(answer->logs(0).task_id(), "t-b2");
  EXPECT_EQ(answer->logs(0).node(), down_node);
  EXPECT_EQ(answer->logs(0).error(), absl::StrCat("node ", down_node, " is down"));
  EXPECT_THAT(link_b_.All(), IsEmpty());
}

TEST_P(LogRequestsDownNodeTest, TheErrorWaitsForTheOtherTasks) {
  v1::Job job = TwoAttemptJob();
  GetParam().take_down(nodes_, job);

  EXPECT_EQ(Start(job, Request()), nullptr);
  EXPECT_EQ(requests_.size(), 1);
  EXPECT_THAT(FetchedTaskIds(link_a_), ElementsAre("t-a2"));
  EXPECT_THAT(link_b_.All(), IsEmpty());

  LogRequests::Completion completion =
      requests_.OnReply("node-a", Reply(Fetches(link_a_)[0], "out-a"));
  ASSERT_NE(completion, nullptr);
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_THAT(answer->logs(), SizeIs(2));
  EXPECT_EQ(EntryOf(*answer, "t-a2").stdout(), "out-a");
  EXPECT_EQ(EntryOf(*answer, "t-a2").error(), "");
  EXPECT_THAT(EntryOf(*answer, "t-b2").error(), HasSubstr("is down"));
}

void CloseStream(NodeRegistry& nodes, v1::Job&) {
  ASSERT_NE(nodes.Disconnect(nodes.Find("node-b")->link), nullptr);
}
void MarkNotReady(NodeRegistry& nodes, v1::Job&) { nodes.Find("node-b")->ready = false; }
void MoveToUnknownNode(NodeRegistry&, v1::Job& job) { job.mutable_tasks(2)->set_node("node-gone"); }

INSTANTIATE_TEST_SUITE_P(Ways, LogRequestsDownNodeTest,
                         ::testing::Values(DownCase{"StreamClosed", CloseStream},
                                           DownCase{"NotReady", MarkNotReady},
                                           DownCase{"NeverKnown", MoveToUnknownNode}),
                         [](const ::testing::TestParamInfo<DownCase>& info) {
                           return info.param.name;
                         });

TEST_F(LogRequestsTest, TheLastReplyAnswers) {
  ASSERT_EQ(Start(TwoAttemptJob(), Request()), nullptr);

  v1::LogsReply reply_a = Reply(Fetches(link_a_)[0], "out-a");
  reply_a.set_stderr("err-a");
  reply_a.set_truncated(true);
  EXPECT_EQ(requests_.OnReply("node-a", reply_a), nullptr);
  EXPECT_THAT(answers_, IsEmpty());
  EXPECT_EQ(requests_.size(), 1);

  v1::LogsReply reply_b = Reply(Fetches(link_b_)[0], "");
  reply_b.set_error("no such log file");
  LogRequests::Completion completion = requests_.OnReply("node-b", reply_b);
  ASSERT_NE(completion, nullptr);
  EXPECT_EQ(requests_.size(), 0);
  EXPECT_THAT(answers_, IsEmpty());

  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_THAT(answer->logs(), SizeIs(2));
  const v1::TaskLogs a = EntryOf(*answer, "t-a2");
  EXPECT_EQ(a.node(), "node-a");
  EXPECT_EQ(a.stdout(), "out-a");
  EXPECT_EQ(a.stderr(), "err-a");
  EXPECT_TRUE(a.truncated());
  EXPECT_EQ(a.error(), "");
  const v1::TaskLogs b = EntryOf(*answer, "t-b2");
  EXPECT_EQ(b.node(), "node-b");
  EXPECT_EQ(b.stdout(), "");
  EXPECT_FALSE(b.truncated());
  EXPECT_EQ(b.error(), "no such log file");
}

TEST_F(LogRequestsTest, AReplyFromTheWrongNodeIsIgnored) {
  ASSERT_EQ(Start(TwoAttemptJob(), Request("t-a2")), nullptr);
  const v1::FetchLogs fetch = Fetches(link_a_)[0];

  EXPECT_EQ(requests_.OnReply("node-b", Reply(fetch, "forged")), nullptr);
  EXPECT_EQ(requests_.size(), 1);

  // Still outstanding: the deadline marks it timed out, without the forged
  // output.
  std::vector<LogRequests::Completion> expired = requests_.Expire(kT0 + kTimeout);
  ASSERT_THAT(expired, SizeIs(1));
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(expired[0]);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_THAT(answer->logs(), SizeIs(1));
  EXPECT_EQ(answer->logs(0).stdout(), "");
  EXPECT_EQ(answer->logs(0).error(), "timed out waiting for the agent");
}

TEST_F(LogRequestsTest, TheRightNodeStillAnswersAfterAWrongOne) {
  ASSERT_EQ(Start(TwoAttemptJob(), Request("t-a2")), nullptr);
  const v1::FetchLogs fetch = Fetches(link_a_)[0];
  EXPECT_EQ(requests_.OnReply("node-b", Reply(fetch, "forged")), nullptr);

  LogRequests::Completion completion = requests_.OnReply("node-a", Reply(fetch, "real"));
  ASSERT_NE(completion, nullptr);
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(completion);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(EntryOf(*answer, "t-a2").stdout(), "real");
}

TEST_F(LogRequestsTest, LateUnknownOrMalformedRepliesAreIgnored) {
  ASSERT_EQ(Start(TwoAttemptJob(), Request()), nullptr);
  const v1::FetchLogs fetch_a = Fetches(link_a_)[0];
  const std::string id = fetch_a.request_id().substr(0, fetch_a.request_id().find('/'));

  const struct {
    const char* name;
    std::string request_id;
  } cases[] = {
      {"empty", ""},
      {"not a number", "abc/t-a2"},
      {"no task", id},
      {"unknown request", absl::StrCat(id, "999/t-a2")},
      {"unknown task", absl::StrCat(id, "/t-zz")},
      {"older attempt's task", absl::StrCat(id, "/t-a1")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    v1::LogsReply reply = Reply(fetch_a, "out");
    reply.set_request_id(c.request_id);
    EXPECT_EQ(requests_.OnReply("node-a", reply), nullptr);
  }
  EXPECT_EQ(requests_.size(), 1);
  EXPECT_THAT(answers_, IsEmpty());

  // Both real replies complete the request; a repeat of one comes late.
  EXPECT_EQ(requests_.OnReply("node-a", Reply(fetch_a, "out-a")), nullptr);
  LogRequests::Completion completion =
      requests_.OnReply("node-b", Reply(Fetches(link_b_)[0], "out-b"));
  ASSERT_NE(completion, nullptr);
  EXPECT_EQ(requests_.OnReply("node-a", Reply(fetch_a, "out-a")), nullptr);
  EXPECT_EQ(requests_.OnReply("node-b", Reply(Fetches(link_b_)[0], "out-b")), nullptr);
  EXPECT_EQ(requests_.size(), 0);
}

TEST_F(LogRequestsTest, ExpireAnswersOnlyRequestsPastTheirDeadline) {
  // Request 1 (due at kT0 + 10s): t-a2 answered, t-b2 outstanding.
  ASSERT_EQ(Start(TwoAttemptJob(), Request(), kT0 + kTimeout), nullptr);
  const v1::FetchLogs first_a = Fetches(link_a_)[0];
  EXPECT_EQ(requests_.OnReply("node-a", Reply(first_a, "out-a")), nullptr);
  // Request 2 (due at kT0 + 20s).
  ASSERT_EQ(Start(TwoAttemptJob(), Request("t-a2"), kT0 + 2 * kTimeout), nullptr);
  EXPECT_EQ(requests_.size(), 2);

  EXPECT_THAT(requests_.Expire(kT0 + kTimeout - absl::Nanoseconds(1)), IsEmpty());
  EXPECT_EQ(requests_.size(), 2);

  // Due at its deadline.
  std::vector<LogRequests::Completion> expired = requests_.Expire(kT0 + kTimeout);
  ASSERT_THAT(expired, SizeIs(1));
  EXPECT_EQ(requests_.size(), 1);
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(expired[0]);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_THAT(answer->logs(), SizeIs(2));
  EXPECT_EQ(EntryOf(*answer, "t-a2").stdout(), "out-a");
  EXPECT_EQ(EntryOf(*answer, "t-a2").error(), "");
  EXPECT_EQ(EntryOf(*answer, "t-b2").error(), "timed out waiting for the agent");

  // The expired request's remaining reply comes late.
  EXPECT_EQ(requests_.OnReply("node-b", Reply(Fetches(link_b_)[0], "late")), nullptr);
  EXPECT_THAT(answers_, SizeIs(1));

  // The second is still live: its reply answers it.
  const std::vector<v1::FetchLogs> fetches_a = Fetches(link_a_);
  ASSERT_THAT(fetches_a, SizeIs(2));
  LogRequests::Completion completion = requests_.OnReply("node-a", Reply(fetches_a[1], "again"));
  ASSERT_NE(completion, nullptr);
  EXPECT_EQ(requests_.size(), 0);
  EXPECT_THAT(requests_.Expire(kT0 + 3 * kTimeout), IsEmpty());
}

TEST_F(LogRequestsTest, ExpireKeepsTheErrorsOfDownNodes) {
  nodes_.Find("node-b")->ready = false;
  ASSERT_EQ(Start(TwoAttemptJob(), Request()), nullptr);
  std::vector<LogRequests::Completion> expired = requests_.Expire(kT0 + kTimeout);
  ASSERT_THAT(expired, SizeIs(1));
  absl::StatusOr<v1::GetTaskLogsResponse> answer = Run(expired[0]);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(EntryOf(*answer, "t-a2").error(), "timed out waiting for the agent");
  EXPECT_EQ(EntryOf(*answer, "t-b2").error(), "node node-b is down");
  EXPECT_EQ(requests_.size(), 0);
}

}  // namespace
}  // namespace joule
