#include "scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/device_catalog.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/range_list.h"
#include "scheduler/carbon.h"
#include "scheduler/operator_cap.h"
#include "scheduler/scheduler_internal.h"
#include "scheduler/store/job_id_floor.h"
#include "spec/job_validation.h"

namespace joule {

using internal::CapObjective;
using internal::IsActive;
using internal::kBanditKeyPrefix;
using internal::kProfileKeyPrefix;
using internal::ProfileKey;

namespace {

constexpr int kMaxEventsPerJob = 100;
// Client ids are at most 128 bytes; the API scopes them by "USER/".
constexpr size_t kMaxRequestIdBytes = 128 + 65;
constexpr absl::Duration kPlacementRetryPeriod = absl::Seconds(2);
// Finished jobs whose explanation keeps every node's verdict.

int64_t JobNumber(const std::string& job_id) {
  int64_t n = 0;
  if (absl::StartsWith(job_id, "job-") &&
      absl::SimpleAtoi(absl::string_view(job_id).substr(4), &n)) {
    return n;
  }
  return 0;
}




}  // namespace

Scheduler::Scheduler(Store* store, const Clock* clock, SchedulerOptions options,
                     Pipelines pipelines)
    : clock_(clock),
      options_(options),
      pipelines_(std::move(pipelines)),
      default_pipeline_(pipelines_.at(options_.placement_config->default_profile).get()),
      coolest_throttle_c_([&options] {
        double coolest = std::numeric_limits<double>::infinity();
        for (const GpuModelSpec& spec : options.gpu_catalog) {
          coolest = std::min(coolest, spec.throttle_temp_c);
        }
        return coolest;
      }()),
      rng_(options.random_seed),
      store_(std::make_unique<JobStore>(store, options.store_writes, &mu_)) {}

Scheduler::~Scheduler() {
  // Before anything else goes: the last completions take mu_ and use the
  // state (and may send StartTasks on links still registered).
  store_.reset();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    Store* store, const Clock* clock, SchedulerOptions options,
    const Store* initial_state) {
  if (!options.placement_config.has_value()) {
    options.placement_config =
        PlacementConfig::BuiltIn(options.energy_aware_placement ? "energy" : "first-fit");
  }
  Pipelines pipelines;
  for (const PlacementProfile& profile : options.placement_config->profiles) {
    absl::Status valid = ValidateProfile(profile);
    absl::StatusOr<std::unique_ptr<PlacementPipeline>> pipeline =
        valid.ok() ? PlacementPipeline::FromProfile(profile,
                                                    PluginArgs{options.telemetry_freshness})
                   : valid;
    if (!pipeline.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement profile ", profile.name, ": ", pipeline.status().message()));
    }
    if (!pipelines.emplace(profile.name, *std::move(pipeline)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement profile ", profile.name, ": defined twice"));
    }
  }
  if (pipelines.count(options.placement_config->default_profile) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement config: default_profile ", options.placement_config->default_profile,
        " is not among its profiles"));
  }
  std::unique_ptr<Scheduler> scheduler(
      new Scheduler(store, clock, std::move(options), std::move(pipelines)));
  absl::MutexLock lock(&scheduler->mu_);
  absl::Status status =
      scheduler->Load(initial_state != nullptr ? *initial_state : *store);
  if (!status.ok()) return status;
  return scheduler;
}

absl::Status Scheduler::Load(const Store& source) {
  // A store repair may have dropped the newest jobs; it stores the highest
  // job number that may have been handed out, and no id is handed out twice.
  absl::StatusOr<int64_t> id_floor = ReadJobIdFloor(source);
  if (!id_floor.ok()) return id_floor.status();
  next_job_number_ = std::max(next_job_number_, *id_floor + 1);
  absl::StatusOr<std::vector<v1::Job>> jobs = JobStore::LoadJobs(source);
  if (!jobs.ok()) return jobs.status();
  const absl::Time now = clock_->Now();
  for (v1::Job& job : *jobs) {
    const int64_t number = JobNumber(job.id());
    next_job_number_ = std::max(next_job_number_, number + 1);
    if (!job.request_id().empty()) request_to_job_[job.request_id()] = job.id();
    for (const v1::Task& task : job.tasks()) {
      task_to_job_[task.task_id()] = job.id();
      if (task.rendezvous_port() > 0) nodes_.PortUsedBefore(task.node(), task.rendezvous_port());
      if (!IsActive(task.state())) continue;
      // The node is known again when its agent registers; until then it is
      // down and its silence counts toward the heartbeat timeout from now.
      NodeRecord& node = nodes_.Remember(task.node());
      if (node.last_seen == absl::Time()) {
        node.last_seen = now;
        node.message = "waiting for the agent after a scheduler restart";
      }
      Allocate(job, task);
    }
    if (job.state() == v1::JOB_STATE_PENDING) AddPending(job);
    if (job.state() == v1::JOB_STATE_RUNNING && !job.shard_state().empty()) {
      absl::StatusOr<Sharder> sharder = Sharder::Parse(job.shard_state());
      if (sharder.ok()) {
        sharders_.emplace(job.id(), *std::move(sharder));
      } else {
        JLOG(WARNING) << "job " << job.id() << ": stored shard state unusable ("
                      << sharder.status() << "); shards will not be rebalanced";
      }
    }
    jobs_[job.id()] = std::move(job);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> profiles =
      source.List(kProfileKeyPrefix);
  if (!profiles.ok()) return profiles.status();
  for (const auto& [key, value] : *profiles) {
    absl::StatusOr<std::vector<CapPoint>> profile = ParseProfile(value);
    if (!profile.ok()) {
      // A bad profile costs a re-profiling run, not the scheduler.
      JLOG(WARNING) << "ignoring stored profile " << key << ": " << profile.status();
      continue;
    }
    energy_model_.Put(key.substr(strlen(kProfileKeyPrefix)), *std::move(profile));
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> bandits =
      source.List(kBanditKeyPrefix);
  if (!bandits.ok()) return bandits.status();
  for (const auto& [key, value] : *bandits) {
    const std::string job_class = key.substr(strlen(kBanditKeyPrefix));
    absl::Status parsed = batch_sizer_.ParseClass(job_class, value);
    if (!parsed.ok()) {
      JLOG(WARNING) << "ignoring stored batch sizes of class " << job_class << ": " << parsed;
    }
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> run_costs =
      source.List(internal::kRunCostKeyPrefix);
  if (!run_costs.ok()) return run_costs.status();
  for (const auto& [key, value] : *run_costs) {
    const std::string job_class = key.substr(strlen(internal::kRunCostKeyPrefix));
    absl::Status parsed = energy_model_.runs().ParseClass(job_class, value);
    if (!parsed.ok()) {
      // Like a bad profile: the class measures its runs again.
      JLOG(WARNING) << "ignoring stored run costs of class " << job_class << ": " << parsed;
    }
  }
  // Nodes a previous scheduler suspended: asleep until woken.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> suspended =
      source.List(internal::kSuspendedKeyPrefix);
  if (!suspended.ok()) return suspended.status();
  for (const auto& [key, value] : *suspended) {
    v1::NodeInfo info;
    if (!info.ParseFromString(value) || info.name().empty()) {
      return absl::DataLossError(absl::StrCat("stored suspended node ", key, " does not parse"));
    }
    NodeRecord& node = nodes_.Remember(info.name());
    if (node.link != nullptr) continue;
    node.info = info;
    node.ready = false;
    node.message = "suspended (idle power management; known from the store)";
    node_power_.RestoreSuspended(info.name(), now);
  }
  // Attempts running now count as in flight for their class's bandit.
  for (const auto& [id, job] : jobs_) {
    if (job.state() != v1::JOB_STATE_RUNNING || job.tasks().empty() || job.batch_corrected() ||
        !LearnsBatchSize(job.spec())) {
      continue;
    }
    batch_sizer_.Started(BatchRequestOf(job), job.tasks().rbegin()->batch_size());
  }
  JLOG(INFO) << "loaded " << jobs_.size() << " jobs (" << queue_.size() + queue_.backoff_size()
             << " pending) and " << energy_model_.size() << " power profiles from the store";
  return absl::OkStatus();
}

void Scheduler::Changed(v1::Job& job) {
  SumEnergy(job);
  (void)store_->Put(job);
  Notify(job);
}

void Scheduler::Notify(const v1::Job& job) {
  for (auto& [handle, watcher] : watchers_) {
    if (watcher.first == job.id()) watcher.second(job);
  }
}

void Scheduler::AwaitStoreWrites() { store_->Flush(); }

GroupCommitWriter::Stats Scheduler::StoreWriterStats() const { return store_->stats(); }

Scheduler::StoreHealth Scheduler::GetStoreHealth() const {
  absl::MutexLock lock(&mu_);
  StoreHealth health;
  health.last_error = store_->last_error();
  health.unstored_jobs = store_->unstored_jobs();
  return health;
}

void Scheduler::AddEvent(v1::Job& job, const std::string& reason,
                         const std::string& message) {
  if (job.events_size() >= kMaxEventsPerJob) {
    job.mutable_events()->DeleteSubrange(0, 1);
  }
  v1::JobEvent* event = job.add_events();
  *event->mutable_time() = ToProtoTime(clock_->Now());
  event->set_reason(reason);
  event->set_message(message);
  JLOG(INFO) << job.id() << " " << reason << ": " << message;
}

absl::StatusOr<v1::Job> Scheduler::SubmitJob(v1::JobSpec spec, const std::string& request_id) {
  absl::Notification answered;
  absl::StatusOr<v1::Job> answer;
  SubmitJobAsync(std::move(spec), request_id, [&](absl::StatusOr<v1::Job> job) {
    answer = std::move(job);
    answered.Notify();
  });
  answered.WaitForNotification();
  return answer;
}

void Scheduler::SubmitJobAsync(v1::JobSpec spec, const std::string& request_id,
                               SubmitCallback done) {
  if (request_id.size() > kMaxRequestIdBytes) {
    done(absl::InvalidArgumentError(absl::StrFormat(
        "request_id: %d bytes, at most %d", request_id.size(), kMaxRequestIdBytes)));
    return;
  }
  ApplyJobSpecDefaults(&spec);
  absl::Status valid = ValidateJobSpec(spec, clock_->Now());
  if (valid.ok() && PipelineFor(spec) == nullptr) {
    valid = absl::InvalidArgumentError(absl::StrCat("placement_profile: no profile named ",
                                                    spec.placement_profile(), " (",
                                                    ProfileNames(), ")"));
  }
  if (!valid.ok()) {
    done(valid);
    return;
  }
  absl::MutexLock lock(&mu_);
  Submit(std::move(spec), request_id, std::move(done));
}

void Scheduler::Submit(v1::JobSpec spec, const std::string& request_id, SubmitCallback done) {
  if (!request_id.empty()) {
    // A submission with this id still on its way to the store decides:
    // after it, the id names its job or (refused) nothing, and this one is
    // answered (or submitted) then.
    if (auto waiting = submitting_.find(request_id); waiting != submitting_.end()) {
      waiting->second.push_back([this, spec = std::move(spec), request_id,
                                 done = std::move(done)]() mutable {
        mu_.AssertHeld();
        Submit(std::move(spec), request_id, std::move(done));
      });
      return;
    }
    if (auto seen = request_to_job_.find(request_id); seen != request_to_job_.end()) {
      const v1::Job& existing = jobs_.at(seen->second);
      if (existing.spec().SerializeAsString() != spec.SerializeAsString()) {
        done(absl::AlreadyExistsError(absl::StrCat("request_id ", request_id,
                                                   " already created ", existing.id(),
                                                   " from a different spec")));
      } else {
        done(existing);
      }
      return;
    }
  }
  // Taken for good: submissions that arrive while this one is on its way
  // to the store number theirs above it, and a refused job's number is
  // skipped.
  v1::Job job;
  job.set_id(absl::StrCat("job-", next_job_number_++));
  *job.mutable_spec() = std::move(spec);
  job.set_state(v1::JOB_STATE_PENDING);
  job.set_message("waiting for placement");
  *job.mutable_submit_time() = ToProtoTime(clock_->Now());
  job.set_request_id(request_id);
  // Present from the start, so that `joulectl get` can tell a job measured
  // without a carbon config (no currency) from one not yet measured.
  job.mutable_footprint()->set_currency(options_.carbon.currency());
  AddEvent(job, "Submitted", absl::StrCat("job ", job.spec().name(), " accepted"));
  // Durable before the client hears of it. Queued under the lock and
  // answered from the write's completion: submissions arriving meanwhile
  // share the commit, and no thread waits for it.
  // (With inline commits the write, and Submitted, are done inside PutNew.)
  if (!request_id.empty()) submitting_.try_emplace(request_id);
  auto submitted = std::make_shared<v1::Job>(job);
  auto answer = std::make_shared<SubmitCallback>(std::move(done));
  const absl::Status queued =
      store_->PutNew(job, [this, submitted, answer](const absl::Status& stored) {
        mu_.AssertHeld();
        Submitted(*submitted, stored, *answer);
      });
  if (!queued.ok()) {
    // Refused outright: never on its way, and nobody can have queued
    // behind it (the lock is held throughout).
    submitting_.erase(request_id);
    (*answer)(queued);
  }
}

void Scheduler::Submitted(const v1::Job& job, const absl::Status& stored,
                          const SubmitCallback& done) {
  std::vector<std::function<void()>> waiting;
  if (auto it = submitting_.find(job.request_id()); it != submitting_.end()) {
    waiting = std::move(it->second);
    submitting_.erase(it);
  }
  if (!stored.ok()) {
    // Nothing of the job is kept, and nobody learns its id.
    done(stored);
  } else {
    // Only now visible (get, list, cancel) and pending.
    if (!job.request_id().empty()) request_to_job_[job.request_id()] = job.id();
    jobs_[job.id()] = job;
    AddPending(job);
    placement_dirty_ = true;
    done(job);
  }
  for (std::function<void()>& submit : waiting) submit();
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  }
  return it->second;
}

std::vector<v1::Job> Scheduler::ListJobs(
    const std::set<v1::JobState>& states) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& [id, job] : jobs_) {
    if (states.empty() || states.count(job.state())) out.push_back(job);
  }
  std::sort(out.begin(), out.end(), [](const v1::Job& a, const v1::Job& b) {
    return JobNumber(a.id()) < JobNumber(b.id());
  });
  return out;
}

absl::StatusOr<v1::Job> Scheduler::CancelJob(const std::string& job_id,
                                             const std::string& reason) {
  // Answered once the store has the cancel (as SubmitJob answers once it
  // has the job), waited for without the lock.
  auto stored = std::make_shared<absl::Notification>();
  absl::StatusOr<v1::Job> answer = CancelAndStore(job_id, reason, stored);
  if (answer.ok()) stored->WaitForNotification();
  return answer;
}

absl::StatusOr<v1::Job> Scheduler::CancelAndStore(
    const std::string& job_id, const std::string& reason,
    std::shared_ptr<absl::Notification> stored) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  }
  v1::Job& job = it->second;
  if (IsFinalJobState(job.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " already ended (",
        v1::JobState_Name(job.state()), ")"));
  }
  const std::string why = reason.empty() ? "cancelled by the user" : reason;
  job.set_cancel_requested(true);
  AddEvent(job, "CancelRequested", why);
  for (v1::Task& task : *job.mutable_tasks()) {
    if (!IsActive(task.state())) continue;
    const NodeRecord* node = nodes_.Find(task.node());
    if (node == nullptr || !node->ready) {
      // Nobody can stop it now; if its node comes back, the agent is told
      // to stop it at registration (the task is not expected there).
      EndTask(job, task, v1::TASK_STATE_LOST,
              absl::StrCat("node ", task.node(), " is down"));
    }
  }
  // Sends the stops to the tasks on live nodes (or, for a node whose stream
  // is briefly closed, at its re-registration), or ends the job.
  Evaluate(job);
  SumEnergy(job);
  // A write the store fails (or refuses outright) does not fail the cancel:
  // the job is unstored and written again at each tick.
  if (!store_->Put(job, [stored](const absl::Status&) { stored->Notify(); }).ok()) {
    stored->Notify();
  }
  Notify(job);
  return job;
}

v1::Node Scheduler::NodeToProto(const NodeRecord& node) const {
  const NodePowerManager::State power = node_power_.state(node.info.name());
  return NodeRegistry::ToProto(node, power == NodePowerManager::State::kSuspending ||
                                         power == NodePowerManager::State::kSuspended ||
                                         power == NodePowerManager::State::kResuming);
}

std::vector<v1::Node> Scheduler::ListNodes() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Node> out;
  for (const auto& [name, node] : nodes_.nodes()) out.push_back(NodeToProto(node));
  return out;
}

absl::StatusOr<v1::Node> Scheduler::GetNode(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  const NodeRecord* node = nodes_.Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  return NodeToProto(*node);
}

absl::StatusOr<int64_t> Scheduler::WatchJob(const std::string& job_id,
                                            JobWatcher watcher) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  }
  watcher(it->second);
  const int64_t handle = next_watcher_++;
  watchers_[handle] = {job_id, std::move(watcher)};
  return handle;
}

void Scheduler::Unwatch(int64_t handle) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(handle);
}

void Scheduler::GetTaskLogs(const v1::GetTaskLogsRequest& request, LogsCallback done) {
  LogRequests::Completion completion;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request.job_id());
    if (it == jobs_.end()) {
      completion = [done, id = request.job_id()] {
        done(absl::NotFoundError(absl::StrCat("job ", id, " not found")));
      };
    } else {
      completion = log_requests_.Start(it->second, request, clock_->Now() + options_.logs_timeout,
                                       nodes_, std::move(done));
    }
  }
  if (completion) completion();
}

absl::Status Scheduler::SetNodeCap(const std::string& node_name, const v1::SetCap& cap) {
  absl::MutexLock lock(&mu_);
  const NodeRecord* found = nodes_.Find(node_name);
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat("node ", node_name, " not found"));
  }
  const NodeRecord& node = *found;
  if (!node.connected()) {
    return absl::UnavailableError(absl::StrCat("node ", node_name, " is down"));
  }
  if (absl::Status valid = CheckOperatorCap(node.info, cap); !valid.ok()) return valid;
  v1::SchedulerCommand command;
  *command.mutable_set_cap() = cap;
  if (command.set_cap().reason().empty()) command.mutable_set_cap()->set_reason("operator");
  node.link->Send(command);
  // Whatever reason the operator gave, the metric's label set stays fixed.
  if (options_.observer != nullptr) options_.observer->OnCapSent("operator");
  JLOG(INFO) << "cap sent to " << node_name << ": " << cap.ShortDebugString();
  return absl::OkStatus();
}

v1::Task* Scheduler::FindTask(const std::string& task_id, v1::Job** job) {
  auto it = task_to_job_.find(task_id);
  if (it == task_to_job_.end()) return nullptr;
  auto job_it = jobs_.find(it->second);
  if (job_it == jobs_.end()) return nullptr;
  for (v1::Task& task : *job_it->second.mutable_tasks()) {
    if (task.task_id() == task_id) {
      *job = &job_it->second;
      return &task;
    }
  }
  return nullptr;
}

void Scheduler::Allocate(const v1::Job& job, const v1::Task& task) {
  nodes_.Allocate(task.node(), task.task_id(), {task.gpu_indices().begin(), task.gpu_indices().end()},
                  job.spec().resources().cpus(), job.spec().resources().memory_bytes());
  if (task.rendezvous_port() > 0) nodes_.HoldPort(task.node(), task.rendezvous_port());
  node_power_.SetIdle(task.node(), false, clock_->Now());
}

void Scheduler::Release(const v1::Job& job, const v1::Task& task) {
  const NodeRecord* node =
      nodes_.Release(task.node(), task.task_id(),
                     {task.gpu_indices().begin(), task.gpu_indices().end()},
                     job.spec().resources().cpus(), job.spec().resources().memory_bytes());
  if (node == nullptr) return;
  if (task.rendezvous_port() > 0) nodes_.ReleasePort(task.node(), task.rendezvous_port());
  placement_dirty_ = true;
  if (node->task_ids.empty()) node_power_.SetIdle(task.node(), true, clock_->Now());
}

absl::Status Scheduler::OnAgentRegister(AgentLink* link,
                                        const v1::Register& message) {
  absl::Status valid = ValidateRegister(message);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  const std::string& name = message.node().name();
  AgentLink* replaced = nullptr;
  NodeRecord& node = nodes_.Register(link, message.node(), clock_->Now(), &replaced);
  if (replaced != nullptr) {
    JLOG(WARNING) << "node " << name << " registered again; the newer stream replaces the old";
  }
  // Ceilings from the devices, and fresh counter baselines (the agent may
  // have started again).
  telemetry_guard_.Register(node.info);
  if (node_power_.Asleep(name) ||
      node_power_.state(name) == NodePowerManager::State::kFailed) {
    JLOG(INFO) << "node " << name << " resumed";
    store_->PutState(StoreMutation{StoreMutation::Op::kDelete,
                                   absl::StrCat(internal::kSuspendedKeyPrefix, name), ""},
                     absl::StrCat("forgetting suspended node ", name));
  }
  node_power_.Registered(name, node.task_ids.empty(), node.last_seen);
  placement_dirty_ = true;
  JLOG(INFO) << "node " << name << " registered with "
             << message.node().devices_size() << " devices and "
             << message.running_tasks_size() << " running tasks";

  v1::SchedulerCommand ack;
  *ack.mutable_register_ack()->mutable_heartbeat_timeout() =
      ToProtoDuration(options_.heartbeat_timeout);
  link->Send(ack);

  // Final events the agent kept while no scheduler was listening.
  for (const v1::TaskEvent& event : message.unacked_events()) {
    ApplyTaskEvent(node, event);
  }
  // Adopt what the agent still runs; stop what it should not run.
  std::set<std::string> reported;
  for (const v1::RunningTask& running : message.running_tasks()) {
    reported.insert(running.task_id());
    v1::Job* job = nullptr;
    v1::Task* task = FindTask(running.task_id(), &job);
    if (task == nullptr || !IsActive(task->state()) || task->node() != name) {
      SendStop(node, running.task_id(), "not expected on this node");
      continue;
    }
    task->set_state(v1::TASK_STATE_RUNNING);
    task->set_pid(running.pid());
    if (running.has_start_time()) *task->mutable_start_time() = running.start_time();
    if (!job->has_start_time()) *job->mutable_start_time() = task->start_time();
    v1::TaskUsage usage = running.usage();
    usage.set_task_id(running.task_id());
    ApplyUsage(node, usage);
    AddEvent(*job, "TaskAdopted",
             absl::StrCat("task ", task->task_id(), " found running on ", name,
                          " (pid ", running.pid(), ")"));
    // Stops decided while the agent was away (cancel, a failed sibling)
    // could not be delivered; Evaluate sends them now.
    Evaluate(*job);
    Changed(*job);
  }
  // Tasks placed here that the agent does not know: it never started them
  // or lost them. They are lost; their jobs run again as a new attempt.
  std::vector<std::string> unknown;
  for (const std::string& task_id : node.task_ids) {
    // A task whose placement is still being stored: its StartTask comes
    // when the store has it.
    if (!reported.count(task_id) && !unsent_tasks_.contains(task_id)) {
      unknown.push_back(task_id);
    }
  }
  for (const std::string& task_id : unknown) {
    v1::Job* job = nullptr;
    v1::Task* task = FindTask(task_id, &job);
    if (task == nullptr || !IsActive(task->state())) continue;
    EndTask(*job, *task, v1::TASK_STATE_LOST,
            absl::StrCat("agent on ", name, " does not run the task"));
    Evaluate(*job);
    Changed(*job);
  }
  return absl::OkStatus();
}

absl::Status Scheduler::OnAgentMessage(AgentLink* link,
                                       const v1::AgentMessage& message) {
  std::function<void()> completion;
  {
    absl::MutexLock lock(&mu_);
    NodeRecord* node = nodes_.FindByLink(link);
    if (node == nullptr) {
      return absl::FailedPreconditionError(
          "stream is not registered (or was replaced by a newer one)");
    }
    if (nodes_.Heard(*node, clock_->Now())) {
      placement_dirty_ = true;
      JLOG(INFO) << "node " << node->info.name() << " is back";
    }
    switch (message.msg_case()) {
      case v1::AgentMessage::kTelemetry:
        // Impossible samples are dropped whole: the task usages in them are
        // attributed from the same readings.
        if (Refused(*node, telemetry_guard_.CheckSample(node->info.name(), message.telemetry(),
                                                        node->last_seen))) {
          break;
        }
        if (nodes_.TakeTelemetry(*node, message.telemetry(), options_.telemetry_freshness)) {
          placement_dirty_ = true;
        }
        for (const v1::TaskUsage& usage : message.telemetry().tasks()) {
          ApplyUsage(*node, usage);
        }
        ThermalBackoff(*node, message.telemetry());
        break;
      case v1::AgentMessage::kTaskEvent:
        ApplyTaskEvent(*node, message.task_event());
        break;
      case v1::AgentMessage::kHeartbeat:
        break;
      case v1::AgentMessage::kGoingDown: {
        const std::string reason = message.going_down().reason().substr(0, 256);
        if (node_power_.state(node->info.name()) == NodePowerManager::State::kSuspending) {
          // Asleep (and so wakeable) only once its stream closes: a resume
          // sent while the node is still shutting down would be lost.
          node->ready = false;
          node->message = absl::StrCat("suspending (idle power management): ", reason);
          JLOG(INFO) << "node " << node->info.name() << " going down for suspend: " << reason;
        } else {
          MarkNodeDown(*node, absl::StrCat("the agent is going down: ", reason));
        }
        placement_dirty_ = true;
        break;
      }
      case v1::AgentMessage::kLogs:
        completion = log_requests_.OnReply(node->info.name(), message.logs());
        break;
      case v1::AgentMessage::kRegister:
        return absl::FailedPreconditionError("register sent twice on one stream");
      case v1::AgentMessage::MSG_NOT_SET:
        return absl::InvalidArgumentError("agent message: empty");
    }
  }
  if (completion) completion();
  return absl::OkStatus();
}

void Scheduler::OnAgentDisconnect(AgentLink* link) {
  absl::MutexLock lock(&mu_);
  NodeRecord* node = nodes_.Disconnect(link);
  if (node == nullptr) return;
  if (node_power_.Disconnected(node->info.name()) ||
      node_power_.state(node->info.name()) == NodePowerManager::State::kSuspended) {
    node->ready = false;
    store_->PutState(StoreMutation{StoreMutation::Op::kPut,
                                   absl::StrCat(internal::kSuspendedKeyPrefix, node->info.name()),
                                   node->info.SerializeAsString()},
                     absl::StrCat("storing suspended node ", node->info.name()));
    if (!absl::StartsWith(node->message, "suspended")) {
      node->message = "suspended (idle power management)";
    }
    JLOG(INFO) << "node " << node->info.name() << " suspended";
    return;
  }
  // Tasks keep running on the node; the heartbeat timeout decides whether
  // they are lost, and a reconnect within it adopts them.
  node->message = "agent stream closed; waiting for it to reconnect";
  JLOG(WARNING) << "node " << node->info.name() << " disconnected";
}

void Scheduler::ApplyUsage(NodeRecord& node, const v1::TaskUsage& usage) {
  v1::Job* job = nullptr;
  v1::Task* task = FindTask(usage.task_id(), &job);
  if (task == nullptr || task->node() != node.info.name() ||
      !IsActive(task->state())) {
    // A task this node should not be running (e.g. lost, then re-queued).
    SendStop(node, usage.task_id(), "not expected on this node");
    return;
  }
  const std::string shards_done_before = task->shards_done();
  const absl::optional<double> quality_before =
      task->has_quality() ? absl::optional<double>(task->quality()) : absl::nullopt;
  const double energy_before_j = task->energy().total_j();
  TakeUsage(node, *job, usage, task);
  AccountEnergy(*job, *task, energy_before_j);
  WatchQuality(*job, *task, quality_before);
  if (usage.latency_batch_size() > 0) {
    latencies_[task->task_id()][usage.latency_batch_size()] = usage.latency_ms();
    SizeInferenceBatch(*job, *task);
  }
  // Live energy is not persisted at every sample; final figures are stored
  // with the task's end.
  SumEnergy(*job);
  FeedProfiler(*job, *task);
  EnforceBudget(*job);
  CorrectBatchSize(*job);
  if (task->shards_done() != shards_done_before || task->waiting_for_shards()) {
    FeedSharder(*job, *task);
    Changed(*job);
  }
}

void Scheduler::TakeUsage(const NodeRecord& node, const v1::Job& job,
                          const v1::TaskUsage& usage, v1::Task* task) {
  const absl::Duration since_submit = clock_->Now() - FromProtoTime(job.submit_time());
  const bool energy_ok = !Refused(node, telemetry_guard_.CheckTaskEnergy(
                                            node.info.name(), usage.energy(), task->energy(),
                                            since_submit));
  const v1::Energy accounted = task->energy();
  CopyUsage(usage, task);
  if (!energy_ok) *task->mutable_energy() = accounted;
}

bool Scheduler::Refused(const NodeRecord& node,
                        const absl::optional<TelemetryProblem>& problem) {
  if (!problem.has_value()) return false;
  const std::string& name = node.info.name();
  const absl::string_view reason = TelemetryRejectionLabel(problem->reason);
  if (telemetry_guard_.FirstOf(name, problem->reason)) {
    JLOG(WARNING) << "node " << name << ": dropped impossible telemetry (" << reason
                  << "): " << problem->detail
                  << "; more for this reason are only counted in "
                     "joule_telemetry_rejected_total";
  }
  if (options_.observer != nullptr) options_.observer->OnTelemetryRejected(name, reason);
  return true;
}

void Scheduler::AccountEnergy(v1::Job& job, const v1::Task& task, double before_j) {
  const double delta_j = task.energy().total_j() - before_j;
  // Task energy is cumulative; a lower report (which agents do not send)
  // takes nothing back: emitted carbon stays emitted.
  if (!(delta_j > 0) || !std::isfinite(delta_j)) return;
  const double kwh = delta_j / kJoulesPerKwh;
  v1::Footprint* footprint = job.mutable_footprint();
  footprint->set_kwh(footprint->kwh() + kwh);
  energy_j_total_ += delta_j;
  const CarbonConfig& carbon = options_.carbon;
  if (!carbon.configured()) {
    footprint->set_unpriced_kwh(footprint->unpriced_kwh() + kwh);
    return;
  }
  std::string region;
  if (const NodeRecord* node = nodes_.Find(task.node()); node != nullptr) {
    auto label = node->info.labels().find(kRegionLabel);
    if (label != node->info.labels().end()) region = label->second;
  }
  // Emissions = energy x carbon intensity of the grid (the method CodeCarbon
  // popularised, https://mlco2.github.io/codecarbon/methodology.html), here
  // from the task's measured energy rather than a power model, one
  // increment at a time at the intensity in force when it is reported, so
  // that a time series that changes during the job is followed.
  const double co2e_g = kwh * carbon.IntensityGPerKwh(region, clock_->Now());
  const double cost = kwh * carbon.PricePerKwh(region);
  footprint->set_co2e_g(footprint->co2e_g() + co2e_g);
  footprint->set_cost(footprint->cost() + cost);
  footprint->set_currency(carbon.currency());
  co2e_g_total_ += co2e_g;
  cost_total_ += cost;
}

MetricsSnapshot Scheduler::Metrics(absl::Duration job_retention) const {
  absl::MutexLock lock(&mu_);
  MetricsSnapshot out;
  const absl::Time now = clock_->Now();
  out.now = now;
  for (v1::JobState state : {v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING,
                             v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                             v1::JOB_STATE_CANCELLED}) {
    out.jobs_by_state[state] = 0;
  }
  for (const auto& [id, job] : jobs_) {
    ++out.jobs_by_state[job.state()];
    // Jobs that never ran have nothing to show; finished ones only for a
    // while, so that the exporter's series stay bounded.
    if (job.attempts() == 0) continue;
    if (IsFinalJobState(job.state()) &&
        (!job.has_end_time() || now - FromProtoTime(job.end_time()) > job_retention)) {
      continue;
    }
    JobMetrics& metrics = out.jobs.emplace_back();
    metrics.id = id;
    metrics.user = job.spec().user();
    metrics.state = job.state();
    metrics.energy = job.energy();
    metrics.co2e_g = job.footprint().co2e_g();
    metrics.cost = job.footprint().cost();
    metrics.budget_j = job.spec().energy_budget_j();
    metrics.has_savings = job.has_savings();
    metrics.saved_j = job.savings().saved_j();
  }
  out.queue_length = out.jobs_by_state[v1::JOB_STATE_PENDING];
  for (const auto& [name, node] : nodes_.nodes()) {
    NodeMetrics& metrics = out.nodes.emplace_back();
    metrics.name = name;
    metrics.ready = node.connected();
    metrics.suspended = node_power_.state(name) == NodePowerManager::State::kSuspending ||
                        node_power_.Asleep(name);
    metrics.power_w = node.last_sample.node_power_w();
    const absl::Time since =
        node.last_telemetry != absl::Time() ? node.last_telemetry : node.last_seen;
    metrics.telemetry_age =
        since == absl::Time() ? absl::ZeroDuration() : std::max(absl::ZeroDuration(), now - since);
  }
  out.energy_j = energy_j_total_;
  out.saved_j = saved_j_total_;
  out.co2e_g = co2e_g_total_;
  out.cost = cost_total_;
  out.currency = options_.carbon.currency();
  out.unstored_jobs = store_->unstored_jobs();
  return out;
}

void Scheduler::ApplyTaskEvent(NodeRecord& node, const v1::TaskEvent& event) {
  v1::Job* job = nullptr;
  v1::Task* task = FindTask(event.task_id(), &job);
  const bool final_event = event.kind() == v1::TaskEvent::KIND_EXITED ||
                           event.kind() == v1::TaskEvent::KIND_START_FAILED;
  auto ack = [&] {
    if (!final_event || node.link == nullptr) return;
    v1::SchedulerCommand command;
    command.mutable_ack_task_event()->set_task_id(event.task_id());
    node.link->Send(command);
  };
  if (task == nullptr || task->node() != node.info.name()) {
    JLOG(WARNING) << "event for unknown task " << event.task_id() << " from "
                  << node.info.name();
    ack();
    return;
  }
  switch (event.kind()) {
    case v1::TaskEvent::KIND_STARTED:
      if (task->state() == v1::TASK_STATE_STARTING) {
        task->set_state(v1::TASK_STATE_RUNNING);
        task->set_pid(event.pid());
        *task->mutable_start_time() = event.time();
        if (!job->has_start_time()) *job->mutable_start_time() = event.time();
        AddEvent(*job, "TaskStarted",
                 absl::StrFormat("task %s started on %s (pid %d)",
                                 task->task_id(), node.info.name(), event.pid()));
        Evaluate(*job);
        Changed(*job);
      } else if (!IsActive(task->state())) {
        SendStop(node, task->task_id(), "task already ended or was lost");
      }
      return;
    case v1::TaskEvent::KIND_START_FAILED:
    case v1::TaskEvent::KIND_EXITED: {
      if (!IsActive(task->state())) {
        // Already final (e.g. a duplicate after reconnect): keep the first
        // outcome but take the final energy if we had none.
        if (task->energy().total_j() == 0 && event.has_usage() &&
            !Refused(node, telemetry_guard_.CheckTaskEnergy(
                               node.info.name(), event.usage().energy(), task->energy(),
                               clock_->Now() - FromProtoTime(job->submit_time())))) {
          *task->mutable_energy() = event.usage().energy();
          AccountEnergy(*job, *task, 0);
          StoreThenAck(*job, node.info.name(), event.task_id());
          Notify(*job);
        } else if (store_->Unsettled(job->id())) {
          // The task's end may not be stored yet.
          StoreThenAck(*job, node.info.name(), event.task_id());
        } else {
          ack();
        }
        return;
      }
      if (event.has_usage()) {
        const double energy_before_j = task->energy().total_j();
        TakeUsage(node, *job, event.usage(), task);
        AccountEnergy(*job, *task, energy_before_j);
        FeedSharder(*job, *task);
      }
      task->set_exit_code(event.exit_code());
      *task->mutable_end_time() =
          event.has_time() ? event.time() : ToProtoTime(clock_->Now());
      const TaskEnding ending = EndingOf(event, node.info.name());
      EndTask(*job, *task, ending.state, ending.message);
      Evaluate(*job);
      StoreThenAck(*job, node.info.name(), event.task_id());
      Notify(*job);
      return;
    }
    case v1::TaskEvent::KIND_UNSPECIFIED:
    default:
      JLOG(WARNING) << "task event without kind from " << node.info.name();
      return;
  }
}

void Scheduler::StoreThenAck(v1::Job& job, const std::string& node,
                             const std::string& task_id) {
  SumEnergy(job);
  // Not stored: not acknowledged, and the agent sends the event again when
  // it registers again.
  (void)store_->Put(job, [this, node, task_id](const absl::Status& stored) {
    mu_.AssertHeld();
    if (!stored.ok()) return;
    v1::SchedulerCommand command;
    command.mutable_ack_task_event()->set_task_id(task_id);
    nodes_.Send(node, command);
  });
}

void Scheduler::EndTask(v1::Job& job, v1::Task& task, v1::TaskState state,
                        const std::string& message_in) {
  early_stop_.Forget(task.task_id());
  latencies_.erase(task.task_id());
  last_resize_.erase(task.task_id());
  const std::string message =
      task.stopped_early() && state == v1::TASK_STATE_SUCCEEDED && message_in.empty()
          ? "stopped-early: quality stopped improving"
          : message_in;
  // A profile cut short is not kept: the next run of the class profiles.
  if (profiling_.erase(task.task_id()) > 0) {
    job.set_cap_decision(absl::StrFormat(
        "%.0f W when the task ended: profiling had not finished (nothing stored; the "
        "next job of class %s profiles again)",
        task.power_cap_w(), job.spec().job_class()));
  }
  task.set_state(state);
  task.set_message(message);
  if (!task.has_end_time()) *task.mutable_end_time() = ToProtoTime(clock_->Now());
  Release(job, task);
  ReplicaGone(job, task);
  AddEvent(job, TaskEndReason(state),
           absl::StrCat("task ", task.task_id(),
                        message.empty() ? "" : ": ", message));
}

void Scheduler::StopTask(const v1::Task& task, const std::string& reason) {
  if (NodeRecord* node = nodes_.Find(task.node()); node != nullptr) {
    SendStop(*node, task.task_id(), reason);
  }
}

void Scheduler::SendStop(NodeRecord& node, const std::string& task_id,
                         const std::string& reason) {
  if (node.link == nullptr) return;
  v1::SchedulerCommand command;
  command.mutable_stop_task()->set_task_id(task_id);
  command.mutable_stop_task()->set_reason(reason);
  *command.mutable_stop_task()->mutable_grace_period() =
      ToProtoDuration(options_.stop_grace);
  node.link->Send(command);
}

void Scheduler::Evaluate(v1::Job& job) {
  if (IsFinalJobState(job.state()) || job.state() == v1::JOB_STATE_PENDING) {
    if (job.state() == v1::JOB_STATE_PENDING && job.cancel_requested()) {
      job.set_state(v1::JOB_STATE_CANCELLED);
      job.set_message("cancelled before it was placed");
      *job.mutable_end_time() = ToProtoTime(clock_->Now());
      RemovePending(job);
      job.clear_not_before();
      AddEvent(job, "Cancelled", job.message());
    }
    return;
  }
  const AttemptTally tally = TallyAttempt(job);
  const int active = tally.active, succeeded = tally.succeeded, total = tally.total;
  const v1::Task* failed = tally.failed;
  const v1::Task* lost = tally.lost;
  // An inference job's replicas are independent: a lost one's shards move to
  // the others (ReplicaGone), which carry on. Training replicas are a gang.
  auto sharder = sharders_.find(job.id());
  const bool replicas_independent = job.spec().type() == v1::JOB_TYPE_INFERENCE &&
                                    sharder != sharders_.end();
  if (lost != nullptr && failed == nullptr && !job.cancel_requested() &&
      replicas_independent && active > 0) {
    job.set_message(absl::StrCat("running; task ", lost->task_id(),
                                 " was lost and its shards moved to the other replicas"));
    return;
  }
  if ((failed != nullptr || lost != nullptr || job.cancel_requested()) &&
      active > 0) {
    // A gang ends together: stop the siblings, decide when all have ended.
    std::string why;
    if (job.cancel_requested()) {
      why = "job cancelled";
      for (const v1::JobEvent& event : job.events()) {
        if (event.reason() == "CancelRequested") why = event.message();
      }
    } else {
      why = absl::StrCat("sibling task ", (failed ? failed : lost)->task_id(),
                         " ended");
    }
    for (const v1::Task& task : job.tasks()) {
      if (task.attempt() == job.attempts() && IsActive(task.state())) {
        StopTask(task, why);
      }
    }
    job.set_message(absl::StrCat("stopping: ", why));
    return;
  }
  if (active > 0) {
    job.set_message(tally.starting > 0
                        ? absl::StrFormat("starting (%d of %d tasks started)",
                                          total - tally.starting, total)
                        : "running");
    return;
  }
  const absl::Time now = clock_->Now();
  if (job.cancel_requested()) {
    job.set_state(v1::JOB_STATE_CANCELLED);
    job.set_message("cancelled");
  } else if (lost != nullptr && failed == nullptr && replicas_independent &&
             sharder->second.AllDone()) {
    job.set_state(v1::JOB_STATE_SUCCEEDED);
    job.set_message(absl::StrCat("all shards done; task ", lost->task_id(),
                                 " was lost on the way"));
  } else if (failed != nullptr || lost != nullptr) {
    // A failure decides over a loss in the same attempt: it is the
    // workload's own verdict -- except in a gang that lost a replica, whose
    // survivors fail because a peer vanished (a torch.distributed
    // collective errors out long before the heartbeat timeout says why):
    // the loss is the attempt's cause.
    const bool gang_lost = lost != nullptr && total > 1;
    if (RetryOrFail(job, failed != nullptr && !gang_lost ? *failed : *lost)) return;
  } else if (succeeded == total && total > 0 && sharder != sharders_.end() &&
             sharder->second.done_count() > 0 && !sharder->second.AllDone()) {
    // The workload reports shards, and some were never done (their replica
    // ended first): they run again as a new attempt, finished ones stay done
    // -- as long as this attempt got some done, so it cannot loop forever.
    bool progress = false;
    for (const v1::Task& task : job.tasks()) {
      progress |= task.attempt() == job.attempts() && !task.shards_done().empty();
    }
    if (!progress) {
      job.set_state(v1::JOB_STATE_FAILED);
      job.set_message(absl::StrFormat(
          "every task exited but %d of %d shards are not done, and this attempt "
          "finished none",
          sharder->second.shard_count() - sharder->second.done_count(),
          sharder->second.shard_count()));
      *job.mutable_end_time() = ToProtoTime(now);
      sharders_.erase(job.id());
      AddEvent(job, "FAILED", job.message());
      return;
    }
    job.set_state(v1::JOB_STATE_PENDING);
    job.set_message(absl::StrFormat(
        "re-queued: every task exited but %d of %d shards are not done",
        sharder->second.shard_count() - sharder->second.done_count(),
        sharder->second.shard_count()));
    AddPending(job);
    placement_dirty_ = true;
    sharders_.erase(job.id());
    AddEvent(job, "Requeued", job.message());
    return;
  } else if (succeeded == total && total > 0) {
    job.set_state(v1::JOB_STATE_SUCCEEDED);
    job.set_message("all tasks succeeded");
    EstimateSavings(job);
    LearnBatchSize(job);
  } else {
    return;
  }
  *job.mutable_end_time() = ToProtoTime(now);
  sharders_.erase(job.id());
  budget_.Forget(job.id());
  explanations_.Finished(job.id());
  AddEvent(job, v1::JobState_Name(job.state()).substr(strlen("JOB_STATE_")),
           job.message());
}

bool Scheduler::RetryOrFail(v1::Job& job, const v1::Task& cause) {
  const RetryDecision decision = DecideRetry(job, cause);
  if (!decision.retry) {
    job.set_state(v1::JOB_STATE_FAILED);
    job.set_message(decision.message);
    return false;
  }
  job.set_retries(job.retries() + 1);
  *job.mutable_not_before() = ToProtoTime(clock_->Now() + decision.wait);
  job.set_state(v1::JOB_STATE_PENDING);
  job.set_message(decision.message);
  // The next attempt's split starts from the shards every attempt finished.
  sharders_.erase(job.id());
  AddPending(job);
  placement_dirty_ = true;
  AddEvent(job, "Retrying", job.message());
  return true;
}

void Scheduler::MarkNodeDown(NodeRecord& node, const std::string& reason) {
  node.ready = false;
  node.message = reason;
  JLOG(WARNING) << "node " << node.info.name() << " is down: " << reason;
  const std::set<std::string> task_ids = node.task_ids;
  for (const std::string& task_id : task_ids) {
    v1::Job* job = nullptr;
    v1::Task* task = FindTask(task_id, &job);
    if (task == nullptr || !IsActive(task->state())) continue;
    EndTask(*job, *task, v1::TASK_STATE_LOST,
            absl::StrCat("node ", node.info.name(), " is down: ", reason));
    Evaluate(*job);
    Changed(*job);
  }
}

void Scheduler::Tick() {
  std::vector<LogRequests::Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    // First, so that the store catches up before anything new is stored.
    store_->WriteUnstored([this](const std::string& id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      // The latest state, not the one whose write failed.
      auto it = jobs_.find(id);
      if (it == jobs_.end()) return static_cast<const v1::Job*>(nullptr);
      SumEnergy(it->second);
      return static_cast<const v1::Job*>(&it->second);
    });
    const absl::Time now = clock_->Now();
    for (NodeRecord* node : nodes_.Silent(now, options_.heartbeat_timeout)) {
      MarkNodeDown(*node, absl::StrFormat("no heartbeat for %.1fs",
                                          absl::ToDoubleSeconds(now - node->last_seen)));
    }
    completions = log_requests_.Expire(now);
    ManageNodePower();
    EndBackoffs();
    // A store that refuses writes would refuse every placement too.
    if (!store_->refusing()) PlacePending();
  }
  for (auto& completion : completions) completion();
}

void Scheduler::ManageNodePower() {
  if (!PowerManaged()) return;
  const absl::Time now = clock_->Now();
  const NodePowerManager::Expired expired = node_power_.Expire(now);
  for (const std::string& name : expired.suspend_failed) {
    JLOG(WARNING) << "node " << name << " is still connected "
                  << absl::FormatDuration(options_.node_power.resume_timeout)
                  << " after its suspend command: taken back into service";
    nodes_.Remember(name).message = "";
    placement_dirty_ = true;
  }
  for (const std::string& name : expired.resume_failed) {
    MarkNodeDown(nodes_.Remember(name),
                 absl::StrCat("did not resume within ",
                              absl::FormatDuration(options_.node_power.resume_timeout)));
    placement_dirty_ = true;
  }
  // Connected nodes with no task: nothing runs there and no placement holds
  // GPUs there (Bind allocates a task's resources before it is stored).
  std::map<std::string, int> eligible;
  for (const auto& [name, node] : nodes_.nodes()) {
    if (!node.connected() || !node.task_ids.empty()) continue;
    if (!PodHeldGpus(node.last_sample).empty()) {
      // A Kubernetes pod uses its GPUs: not idle, whatever Joule runs there.
      node_power_.Hold(name, now);
      continue;
    }
    int gpus = 0;
    for (const v1::Device& device : node.info.devices()) {
      gpus += device.kind() == v1::DEVICE_KIND_GPU;
    }
    eligible[name] = gpus;
  }
  for (const std::string& name : node_power_.ChooseToSuspend(now, eligible)) {
    nodes_.Remember(name).message =
        absl::StrCat("suspending: idle for ",
                     absl::FormatDuration(options_.node_power.suspend_after), " or more");
    JLOG(INFO) << "suspending idle node " << name;
    options_.power_control->Suspend(name);
  }
}

ClusterSnapshot Scheduler::Snapshot() const {
  // Runs once per placement cycle over every node: one power-state lookup
  // per node.
  ClusterSnapshot snapshot;
  snapshot.now = clock_->Now();
  snapshot.nodes.reserve(nodes_.size());
  const bool power_managed = PowerManaged();
  for (const auto& [name, node] : nodes_.nodes()) {
    NodeView view = nodes_.View(node, options_.thermal_margin_c);
    const NodePowerManager::State power = node_power_.state(name);
    view.ready = view.ready && power != NodePowerManager::State::kSuspending;
    if (power_managed && (power == NodePowerManager::State::kSuspended ||
                          power == NodePowerManager::State::kResuming)) {
      // Placement may wake it: the job then waits for its agent to register.
      view.ready = true;
      view.asleep = true;
      view.last_telemetry = snapshot.now;
    }
    snapshot.nodes.push_back(std::move(view));
  }
  snapshot.Index();
  return snapshot;
}

void Scheduler::PlacePending() {
  if (queue_.empty()) return;
  // A cycle that failed to place a job would fail again until something
  // changes: a job arrives or is re-queued, resources are released, a node
  // (re)joins. Only telemetry-driven inputs (freshness, temperature) change
  // without an event, so an unchanged cluster is re-examined at most once
  // per kPlacementRetryPeriod. This keeps a long queue of jobs that do not
  // fit from costing a full pipeline pass per tick.
  const absl::Time now = clock_->Now();
  if (!placement_dirty_ && now < next_forced_placement_) return;
  placement_dirty_ = false;
  next_forced_placement_ = now + kPlacementRetryPeriod;
  // The cycle's duration on the scheduler's clock (0 on a simulated one).
  struct CycleTimer {
    const Clock* clock;
    SchedulerObserver* observer;
    absl::Time start;
    ~CycleTimer() {
      if (observer != nullptr) observer->OnPlacementCycle(clock->Now() - start);
    }
  } timer{clock_, options_.observer, now};
  ClusterSnapshot snapshot = Snapshot();
  // Per GPU model: the mean static power per GPU of the nodes that have it.
  std::map<std::string, double> static_per_gpu;
  {
    std::map<std::string, std::pair<double, int>> sums;
    for (const NodeView& node : snapshot.nodes) {
      for (const GpuView& gpu : node.gpus) {
        sums[gpu.model].first += node.static_power_w / node.gpus.size();
        ++sums[gpu.model].second;
      }
    }
    for (const auto& [model, sum] : sums) static_per_gpu[model] = sum.first / sum.second;
  }
  // The walk visits the heads of the per-shape queues in submission order
  // and drops a shape at its first failure (JobQueue). Jobs behind a failed
  // head keep the message of the last cycle that examined them; `explain`
  // shows them their shape's verdict.
  explanations_.CycleStarted();
  JobQueue::Walk walk = queue_.StartWalk();
  // The cluster with every running task ended, for the starvation guard.
  std::optional<ClusterSnapshot> drained;
  while (std::optional<JobQueue::Entry> entry = walk.Next()) {
    v1::Job& job = jobs_[entry->job_id];
    const v1::JobSpec& spec = job.spec();
    PlacementRequest request;
    request.job_id = job.id();
    request.replicas = spec.replicas();
    request.gpus = spec.resources().gpus();
    request.cpus = spec.resources().cpus();
    request.memory_bytes = spec.resources().memory_bytes();
    request.gpu_model = spec.resources().gpu_model();
    if (request.gpus > 0 && !spec.pin_max_cap() && options_.energy_aware_placement) {
      // The GPU models this job can use: its gpu_model if it names one, on
      // nodes with enough of them for a replica.
      std::set<std::string> usable;
      for (const auto& [model, index] : snapshot.models()) {
        if (!model.empty() && index.most_per_node >= request.gpus &&
            (request.gpu_model.empty() || model == request.gpu_model)) {
          usable.insert(model);
        }
      }
      RouteByEnergy(job, usable, static_per_gpu, snapshot.now, &request);
    }
    // Reserves what it places in the cycle's snapshot, so later jobs of the
    // cycle see it taken.
    const PlacementPipeline* pipeline = PipelineFor(spec);
    PlacementResult result;
    if (pipeline != nullptr) {
      result = pipeline->Place(request, &snapshot);
    } else {
      // Held until an operator configures the profile again, as a pod whose
      // scheduler does not run waits in Kubernetes.
      result.kind = PlacementResult::Kind::kRetryLater;
      result.reason = absl::StrCat("placement profile ", spec.placement_profile(),
                                   " is not configured (", ProfileNames(), ")");
    }
    std::shared_ptr<const v1::JobExplanation> explanation = PlacementExplanations::Build(
        job.id(), result, pipeline != nullptr ? pipeline->profile_name() : spec.placement_profile());
    explanations_.Record(job.id(), explanation);
    if (result.kind != PlacementResult::Kind::kPlaced) {
      // Held, not refused: nodes may join or free up later.
      std::string message = result.reason;
      const bool holds = result.kind == PlacementResult::Kind::kRetryLater &&
                         request.routed_models.empty() &&
                         HoldsTheQueue(job, request, snapshot, &drained);
      if (holds) {
        absl::StrAppend(&message, "; waiting longer than ",
                        absl::FormatDuration(options_.starvation_guard),
                        ", so jobs submitted after it wait until it is placed");
      }
      if (job.message() != message) {
        job.set_message(message);
        Changed(job);
      }
      if (holds) {
        JLOG(DEBUG) << job.id() << " holds the queue (starvation guard)";
        break;
      }
      if (!request.routed_models.empty()) {
        // Energy routing held this job, not its shape: the next job of the
        // shape (another class) may fit elsewhere.
        walk.Continue(*entry);
        continue;
      }
      explanations_.ShapeFailed(entry->shape, explanation);
      continue;
    }
    std::set<std::string> asleep;
    for (const ReplicaPlacement& placement : result.replicas) {
      if (node_power_.Asleep(placement.node)) asleep.insert(placement.node);
    }
    if (!asleep.empty()) {
      // The job waits for the node to come up; its GPUs stay reserved in
      // this cycle's snapshot so that other jobs wake other nodes.
      for (const std::string& name : asleep) {
        if (node_power_.RequestResume(name, now)) {
          nodes_.Remember(name).message = absl::StrCat("resuming for job ", job.id());
          JLOG(INFO) << "resuming node " << name << " for job " << job.id();
          options_.power_control->Resume(name);
        }
      }
      // Its awake nodes wait with it: not suspended meanwhile.
      for (const ReplicaPlacement& placement : result.replicas) {
        if (asleep.count(placement.node) == 0) node_power_.Hold(placement.node, now);
      }
      const std::string message =
          absl::StrCat("waiting for suspended node(s) ", absl::StrJoin(asleep, ", "),
                       " to resume (at most ",
                       absl::FormatDuration(options_.node_power.resume_timeout), ")");
      if (job.message() != message) {
        job.set_message(message);
        Changed(job);
      }
      walk.Continue(*entry);
      continue;
    }
    // A gang's rendezvous port on replica 0's node (0: the node hands out
    // none; a single replica meets nobody). With every port of the node
    // held, the job waits.
    absl::StatusOr<int32_t> port =
        spec.replicas() > 1 ? nodes_.PickPort(result.replicas.front().node) : 0;
    if (!port.ok()) {
      const std::string message = absl::StrCat("not placed: ", port.status().message());
      if (job.message() != message) {
        job.set_message(message);
        Changed(job);
      }
      walk.Continue(*entry);
      continue;
    }
    RemovePending(job);
    absl::Status bound = Bind(job, result, *port);
    if (!bound.ok()) {
      // Not stored, so not started: the job is pending again and waits for
      // a later cycle. A store that is down would refuse the next job too;
      // a value it refuses outright concerns only this job's shape.
      if (absl::IsInvalidArgument(bound)) continue;
      break;
    }
    // The next job of the shape after this one: jobs before it that energy
    // routing held wait for the next cycle.
    walk.Continue(*entry);
  }
}

bool Scheduler::HoldsTheQueue(const v1::Job& job, const PlacementRequest& request,
                              const ClusterSnapshot& snapshot,
                              std::optional<ClusterSnapshot>* drained) const {
  const absl::Duration guard = options_.starvation_guard;
  if (guard <= absl::ZeroDuration() || guard == absl::InfiniteDuration()) return false;
  absl::Time since = FromProtoTime(job.submit_time());
  if (job.has_not_before()) since = std::max(since, FromProtoTime(job.not_before()));
  if (snapshot.now - since < guard) return false;
  // Would it fit if every running task ended? Not if it needs nodes that are
  // down or GPUs pods hold: holding the queue for it could last forever.
  // Made once per cycle: Place changes it only when it places, and then the
  // cycle ends.
  if (!drained->has_value()) {
    *drained = snapshot;
    for (NodeView& node : (*drained)->nodes) {
      for (GpuView& gpu : node.gpus) gpu.free = gpu.held_by.empty();
      node.free_cpus = node.total_cpus;
      node.free_memory_bytes = node.total_memory_bytes;
      node.running_tasks = 0;
    }
    (*drained)->Index();
  }
  const PlacementPipeline* pipeline = PipelineFor(job.spec());
  return pipeline != nullptr &&
         pipeline->Place(request, &**drained).kind == PlacementResult::Kind::kPlaced;
}

const PlacementPipeline* Scheduler::PipelineFor(const v1::JobSpec& spec) const {
  if (spec.placement_profile().empty()) return default_pipeline_;
  auto it = pipelines_.find(spec.placement_profile());
  return it == pipelines_.end() ? nullptr : it->second.get();
}

std::string Scheduler::ProfileNames() const {
  std::vector<std::string> names;
  for (const auto& [name, pipeline] : pipelines_) names.push_back(name);
  return absl::StrCat("known: ", absl::StrJoin(names, ", "));
}

void Scheduler::AddPending(const v1::Job& job) {
  queue_.Add(job, JobNumber(job.id()), clock_->Now());
}

void Scheduler::RemovePending(const v1::Job& job) { queue_.Remove(job, JobNumber(job.id())); }

void Scheduler::EndBackoffs() {
  for (const std::string& job_id : queue_.DueBackoffs(clock_->Now())) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || it->second.state() != v1::JOB_STATE_PENDING) continue;
    AddPending(it->second);
    placement_dirty_ = true;
  }
}

absl::StatusOr<v1::JobExplanation> Scheduler::ExplainJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto job = jobs_.find(job_id);
  if (job == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  return explanations_.Of(job->second, clock_->Now());
}

absl::Status Scheduler::Bind(v1::Job& job, const PlacementResult& result,
                             int32_t rendezvous_port) {
  // What an undo restores if the store refuses the placement.
  auto placement = std::make_shared<PendingPlacement>();
  placement->job_id = job.id();
  placement->before = job;
  if (auto it = sharders_.find(job.id()); it != sharders_.end()) {
    placement->sharder_before = it->second;
  }

  job.set_attempts(job.attempts() + 1);
  job.set_state(v1::JOB_STATE_RUNNING);
  job.set_message("starting");
  job.clear_not_before();
  const int32_t batch_size = ChooseBatchSize(
      job, result.replicas.empty() ? std::string() : GpuModelOf(result.replicas.front()));
  std::string where;
  for (int32_t replica = 0; replica < static_cast<int32_t>(result.replicas.size());
       ++replica) {
    const ReplicaPlacement& replica_placement = result.replicas[replica];
    v1::Task* task = job.add_tasks();
    task->set_task_id(absl::StrFormat("%s.r%d.a%d", job.id(), replica, job.attempts()));
    task->set_replica_index(replica);
    task->set_attempt(job.attempts());
    task->set_state(v1::TASK_STATE_STARTING);
    task->set_node(replica_placement.node);
    for (int32_t gpu : replica_placement.gpu_indices) task->add_gpu_indices(gpu);
    const v1::Device* gpu = TaskGpu(*task);
    task->set_batch_size(batch_size);
    task->set_power_cap_w(gpu == nullptr ? 0 : InitialCap(job, *task, *gpu));
    if (replica == 0) task->set_rendezvous_port(rendezvous_port);

    task_to_job_[task->task_id()] = job.id();
    unsent_tasks_.insert(task->task_id());
    Allocate(job, *task);
    absl::StrAppend(&where, where.empty() ? "" : ", ", replica_placement.node);
  }
  SplitShards(job);
  AddEvent(job, "Scheduled",
           absl::StrFormat("attempt %d placed on %s", job.attempts(), where));
  placement->attempt = job.attempts();
  placement->where = where;
  // Stored before any agent hears of it, so a restart knows every task that
  // might be running: PlacementStored sends the StartTasks once the store
  // has the placement. Nothing is started unless the store has it.
  SumEnergy(job);
  const absl::Status queued = store_->Put(job, [this, placement](const absl::Status& stored) {
    mu_.AssertHeld();
    PlacementStored(*placement, stored);
  });
  if (!queued.ok()) {
    // Refused outright: undone now.
    PlacementStored(*placement, queued);
    return queued;
  }
  // With inline commits the outcome is already in (and handled).
  return placement->done ? placement->status : absl::OkStatus();
}

void Scheduler::PlacementStored(PendingPlacement& placement, const absl::Status& stored) {
  placement.done = true;
  placement.status = stored;
  auto it = jobs_.find(placement.job_id);
  if (it == jobs_.end()) return;  // jobs are never removed
  v1::Job& job = it->second;
  // The attempt's tasks that waited for this write, and whether anything
  // touched the attempt meanwhile (a cancel; a task lost with its node).
  std::vector<v1::Task*> waiting;
  bool untouched = job.attempts() == placement.attempt && !job.cancel_requested();
  for (v1::Task& task : *job.mutable_tasks()) {
    if (task.attempt() != placement.attempt) continue;
    if (unsent_tasks_.erase(task.task_id()) > 0 && task.state() == v1::TASK_STATE_STARTING) {
      waiting.push_back(&task);
    } else {
      untouched = false;
    }
  }
  if (untouched && stored.ok()) {
    Notify(job);
    if (job.attempts() == 1 && options_.observer != nullptr) {
      options_.observer->OnFirstPlacement(clock_->Now() - FromProtoTime(job.submit_time()));
    }
    for (const v1::Task* task : waiting) SendStartTask(job, *task);
    return;
  }
  if (untouched) {
    // Not stored, so not started: the placement is undone in memory (tasks,
    // resources, shard split, attempt count) and the job waits for a later
    // cycle.
    for (const v1::Task* task : waiting) {
      Release(job, *task);
      task_to_job_.erase(task->task_id());
      profiling_.erase(task->task_id());
    }
    job = std::move(placement.before);
    if (placement.sharder_before.has_value()) {
      sharders_.insert_or_assign(job.id(), *std::move(placement.sharder_before));
    } else {
      sharders_.erase(job.id());
    }
    job.set_message(absl::StrCat("placed on ", placement.where,
                                 " but not started: the store refused the write (",
                                 stored.ToString(), "); placing again later"));
    AddPending(job);
    // The failed write may still have landed, and writes of the job queued
    // after it hold the placement: the undone state is written after them
    // (and again at each tick while the store refuses it).
    Changed(job);
    return;
  }
  // Cancelled, or a task of the attempt ended, while the placement was being
  // stored: the tasks no agent has heard of end here, never started, and
  // the job moves on (cancelled, retried or failed as its policy says).
  if (waiting.empty()) return;
  const std::string why =
      !stored.ok() ? absl::StrCat("the store refused the placement (", stored.ToString(), ")")
      : job.cancel_requested() ? std::string("the job was cancelled")
                               : std::string("the attempt ended before its placement was stored");
  for (v1::Task* task : waiting) {
    EndTask(job, *task, v1::TASK_STATE_KILLED, absl::StrCat("not started: ", why));
  }
  Evaluate(job);
  Changed(job);
}

void Scheduler::SendStartTask(const v1::Job& job, const v1::Task& task) {
  const v1::JobSpec& spec = job.spec();
  v1::SchedulerCommand command;
  v1::StartTask* start = command.mutable_start_task();
  start->set_task_id(task.task_id());
  start->set_job_id(job.id());
  start->set_attempt(task.attempt());
  start->set_replica_index(task.replica_index());
  start->set_replica_count(spec.replicas());
  start->set_type(spec.type());
  start->set_command(spec.command());
  *start->mutable_args() = spec.args();
  *start->mutable_env() = spec.env();
  *start->mutable_gpu_indices() = task.gpu_indices();
  start->set_power_cap_w(task.power_cap_w());
  start->set_batch_size(task.batch_size());
  start->set_shards(task.shards());
  start->set_shard_count(spec.shard_count());
  start->set_working_dir(spec.working_dir());
  start->set_user(spec.user());
  // Every replica meets at replica 0's port on replica 0's node.
  for (const v1::Task& first : job.tasks()) {
    if (first.attempt() != task.attempt() || first.replica_index() != 0) continue;
    if (first.rendezvous_port() > 0) {
      if (const NodeRecord* node = nodes_.Find(first.node()); node != nullptr) {
        start->set_master_addr(node->info.address());
      }
      start->set_master_port(first.rendezvous_port());
    }
  }
  nodes_.Send(task.node(), command);
}

}  // namespace joule
