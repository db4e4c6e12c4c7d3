// Fuzz target: the scheduler core's handling of what agents send it.
//
// A Scheduler (scheduler/scheduler.h) on a MemoryStore and a FakeClock is
// driven by a sequence of operations decoded from the input. Each operation
// is [u8 op][u8 arg][u16 little-endian length][length bytes of payload]:
//
//   op % 9  what                       payload
//   0       OnAgentRegister            joule.v1.Register
//   1       OnAgentMessage             joule.v1.AgentMessage
//   2       SubmitJob                  joule.v1.JobSpec
//   3       advance the clock, Tick()  u16 seconds (little-endian)
//   4       OnAgentDisconnect          -
//   5       CancelJob of the job of the (arg >> 3)-th task, or the first job
//   6       GetTaskLogs                joule.v1.GetTaskLogsRequest
//   7       restart: a new Scheduler loads the same store
//   8       SetNodeCap                 joule.v1.SetCap
//
// (arg & 3) % 3 picks one of three agent streams. When arg & 4 is set, ids in the
// payload are replaced with real ones, so that short inputs reach the task
// and job code paths: every task id with that of the (arg >> 3)-th task the
// scheduler holds (and job ids with its job's), a logs reply's request id
// with the last FetchLogs request the stream received, and a node name with
// that of the first node. Payloads that do not decode are skipped, as the
// gRPC layer refuses them.
//
// The scheduler must never crash, whatever the order and contents of the
// messages; at the end every read API must answer, and no energy, kWh,
// CO2e or cost figure may be NaN, infinite or negative.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "fuzz/fuzz_support.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/memory_store.h"

namespace joule::fuzz {
namespace {

constexpr int kLinks = 3;

// Keeps only what the ids substitution needs. Not thread-safe: the target
// drives the scheduler from one thread.
class RecordingLink : public AgentLink {
 public:
  void Send(const v1::SchedulerCommand& command) override {
    ++sent_;
    if (command.has_fetch_logs()) last_fetch_ = command.fetch_logs();
  }
  const v1::FetchLogs& last_fetch() const { return last_fetch_; }

 private:
  int64_t sent_ = 0;
  v1::FetchLogs last_fetch_;
};

struct Ids {
  std::string task_id;
  std::string job_id;
  std::string node;
};

// The (index)-th task over all jobs, in id order; empty ids when none.
Ids PickIds(const Scheduler& scheduler, int index) {
  Ids ids;
  std::vector<std::pair<std::string, std::string>> tasks;
  std::string first_job;
  for (const v1::Job& job : scheduler.ListJobs({})) {
    if (first_job.empty()) first_job = job.id();
    for (const v1::Task& task : job.tasks()) tasks.emplace_back(task.task_id(), job.id());
  }
  ids.job_id = first_job;
  if (!tasks.empty()) {
    const auto& picked = tasks[index % tasks.size()];
    ids.task_id = picked.first;
    ids.job_id = picked.second;
  }
  std::vector<v1::Node> nodes = scheduler.ListNodes();
  if (!nodes.empty()) ids.node = nodes.front().info().name();
  return ids;
}

void Substitute(const Ids& ids, v1::TaskUsage* usage) {
  if (!ids.task_id.empty()) usage->set_task_id(ids.task_id);
}

void Substitute(const Ids& ids, v1::TaskEvent* event) {
  if (!ids.task_id.empty()) event->set_task_id(ids.task_id);
  if (!ids.job_id.empty()) event->set_job_id(ids.job_id);
  if (event->has_usage()) Substitute(ids, event->mutable_usage());
}

void Substitute(const Ids& ids, v1::Register* message) {
  if (!ids.node.empty()) message->mutable_node()->set_name(ids.node);
  for (v1::RunningTask& running : *message->mutable_running_tasks()) {
    if (!ids.task_id.empty()) running.set_task_id(ids.task_id);
    if (!ids.job_id.empty()) running.set_job_id(ids.job_id);
    if (running.has_usage()) Substitute(ids, running.mutable_usage());
  }
  for (v1::TaskEvent& event : *message->mutable_unacked_events()) {
    Substitute(ids, &event);
  }
}

void Substitute(const Ids& ids, const RecordingLink& link, v1::AgentMessage* message) {
  switch (message->msg_case()) {
    case v1::AgentMessage::kRegister:
      Substitute(ids, message->mutable_register_());
      break;
    case v1::AgentMessage::kTelemetry:
      for (v1::TaskUsage& usage : *message->mutable_telemetry()->mutable_tasks()) {
        Substitute(ids, &usage);
      }
      break;
    case v1::AgentMessage::kTaskEvent:
      Substitute(ids, message->mutable_task_event());
      break;
    case v1::AgentMessage::kLogs:
      if (!link.last_fetch().request_id().empty()) {
        message->mutable_logs()->set_request_id(link.last_fetch().request_id());
        message->mutable_logs()->set_task_id(link.last_fetch().task_id());
      }
      break;
    default:
      break;
  }
}

template <typename Message>
bool Decode(absl::string_view payload, Message* message) {
  return message->ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

std::unique_ptr<Scheduler> NewScheduler(Store* store, const Clock* clock) {
  // Store writes inline, on the fuzzing thread: runs are reproducible, and
  // the links are only ever called from this thread.
  SchedulerOptions options;
  options.store_writes.inline_commits = true;
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(store, clock, options);
  FUZZ_CHECK_MSG(scheduler.ok(), "Scheduler::Create failed on its own store: " +
                                     scheduler.status().ToString());
  return *std::move(scheduler);
}

bool Sane(double value) { return std::isfinite(value) && value >= 0; }

void CheckEnergy(const v1::Energy& energy) {
  FUZZ_CHECK(Sane(energy.gpu_j()) && Sane(energy.cpu_j()) && Sane(energy.static_j()) &&
             Sane(energy.total_j()));
}

// Every read API, as the services and the metrics exporter call them; and
// impossible telemetry never reaches accounting (issue 12): whatever agents
// sent, every energy, kWh, CO2e and cost figure is finite and >= 0.
void ReadEverything(const Scheduler& scheduler) {
  for (const v1::Job& job : scheduler.ListJobs({})) {
    FUZZ_CHECK(scheduler.GetJob(job.id()).ok());
    scheduler.ExplainJob(job.id()).IgnoreError();
    CheckEnergy(job.energy());
    for (const v1::Task& task : job.tasks()) CheckEnergy(task.energy());
    const v1::Footprint& footprint = job.footprint();
    FUZZ_CHECK(Sane(footprint.kwh()) && Sane(footprint.co2e_g()) &&
               Sane(footprint.cost()) && Sane(footprint.unpriced_kwh()));
  }
  for (const v1::Node& node : scheduler.ListNodes()) {
    FUZZ_CHECK(scheduler.GetNode(node.info().name()).ok());
  }
  const MetricsSnapshot metrics = scheduler.Metrics(absl::Hours(1));
  FUZZ_CHECK(Sane(metrics.energy_j) && Sane(metrics.co2e_g) && Sane(metrics.cost));
  for (const JobMetrics& job : metrics.jobs) CheckEnergy(job.energy);
  scheduler.GetStoreHealth();
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  joule::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace joule;        // NOLINT: a fuzz target's one function.
  using namespace joule::fuzz;  // NOLINT
  MemoryStore store;
  FakeClock clock;
  std::unique_ptr<Scheduler> scheduler = NewScheduler(&store, &clock);
  // Each restart gets fresh links (a stream never outlives its scheduler).
  auto links = std::make_unique<RecordingLink[]>(kLinks);
  std::vector<std::unique_ptr<RecordingLink[]>> old_links;

  InputReader input(data, size);
  while (!input.empty()) {
    const int op = input.U8() % 9;
    const uint8_t arg = input.U8();
    const absl::string_view payload = input.Bytes(input.U16());
    RecordingLink& link = links[(arg & 3) % kLinks];
    const bool substitute = (arg & 4) != 0;
    const Ids ids = substitute ? PickIds(*scheduler, arg >> 3) : Ids();
    switch (op) {
      case 0: {
        v1::Register message;
        if (!Decode(payload, &message)) break;
        if (substitute) Substitute(ids, &message);
        scheduler->OnAgentRegister(&link, message).IgnoreError();
        break;
      }
      case 1: {
        v1::AgentMessage message;
        if (!Decode(payload, &message)) break;
        if (substitute) Substitute(ids, link, &message);
        scheduler->OnAgentMessage(&link, message).IgnoreError();
        break;
      }
      case 2: {
        v1::JobSpec spec;
        if (!Decode(payload, &spec)) break;
        scheduler->SubmitJob(std::move(spec), substitute ? "request-1" : "")
            .IgnoreError();
        break;
      }
      case 3: {
        InputReader seconds(reinterpret_cast<const uint8_t*>(payload.data()),
                            payload.size());
        clock.Advance(absl::Seconds(seconds.U16()));
        scheduler->Tick();
        break;
      }
      case 4:
        scheduler->OnAgentDisconnect(&link);
        break;
      case 5: {
        const std::string job_id = PickIds(*scheduler, arg >> 3).job_id;
        if (!job_id.empty()) scheduler->CancelJob(job_id, "fuzz").IgnoreError();
        break;
      }
      case 6: {
        v1::GetTaskLogsRequest request;
        if (!Decode(payload, &request)) break;
        if (substitute && !ids.job_id.empty()) request.set_job_id(ids.job_id);
        scheduler->GetTaskLogs(request,
                               [](absl::StatusOr<v1::GetTaskLogsResponse>) {});
        break;
      }
      case 7:
        scheduler.reset();
        old_links.push_back(std::move(links));
        links = std::make_unique<RecordingLink[]>(kLinks);
        scheduler = NewScheduler(&store, &clock);
        break;
      case 8: {
        v1::SetCap cap;
        if (!Decode(payload, &cap)) break;
        const std::string node = substitute ? ids.node : "node-a";
        scheduler->SetNodeCap(node, cap).IgnoreError();
        break;
      }
    }
  }
  ReadEverything(*scheduler);
  return 0;
}
