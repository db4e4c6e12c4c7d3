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
#include "common/node_name.h"
#include "common/proto_time.h"
#include "common/range_list.h"
#include "scheduler/carbon.h"
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

constexpr char kJobKeyPrefix[] = "jobs/";
constexpr int kMaxEventsPerJob = 100;
// Client ids are at most 128 bytes; the API scopes them by "USER/".
constexpr size_t kMaxRequestIdBytes = 128 + 65;
constexpr int64_t kDefaultLogBytes = 64 << 10;
constexpr int64_t kMaxLogBytes = 4 << 20;
constexpr absl::Duration kPlacementRetryPeriod = absl::Seconds(2);
// Finished jobs whose explanation keeps every node's verdict.
constexpr size_t kFullExplanationsKept = 1000;

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}


int64_t JobNumber(const std::string& job_id) {
  int64_t n = 0;
  if (absl::StartsWith(job_id, "job-") &&
      absl::SimpleAtoi(absl::string_view(job_id).substr(4), &n)) {
    return n;
  }
  return 0;
}




// What an agent reports about a running task, into the task.
void CopyUsage(const v1::TaskUsage& usage, v1::Task* task) {
  *task->mutable_energy() = usage.energy();
  task->set_samples_done(usage.samples_done());
  task->set_steps_done(usage.steps_done());
  if (usage.has_quality()) task->set_quality(usage.quality());
  task->set_target_reached(usage.target_reached());
  task->set_shards_done(usage.shards_done());
  task->set_samples_total(usage.samples_total());
  task->set_waiting_for_shards(usage.waiting_for_shards());
}

void SumEnergy(v1::Job& job) {
  v1::Energy total;
  for (const v1::Task& task : job.tasks()) {
    total.set_gpu_j(total.gpu_j() + task.energy().gpu_j());
    total.set_cpu_j(total.cpu_j() + task.energy().cpu_j());
    total.set_static_j(total.static_j() + task.energy().static_j());
    total.set_total_j(total.total_j() + task.energy().total_j());
  }
  *job.mutable_energy() = total;
}

absl::Status ValidateRegister(const v1::Register& message) {
  const v1::NodeInfo& node = message.node();
  if (absl::Status name = ValidateNodeName(node.name()); !name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("register.node.name: ", name.message()));
  }
  if (!(node.cpus() >= 0) || !(node.static_power_w() >= 0) ||
      node.memory_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "register.node: cpus, memory_bytes and static_power_w must be >= 0 "
        "(node ",
        node.name(), ")"));
  }
  std::set<std::pair<int, int>> seen;
  for (const v1::Device& device : node.devices()) {
    if (device.index() < 0 ||
        !seen.insert({device.kind(), device.index()}).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "register.node.devices: duplicate or negative index %d (node %s)",
          device.index(), node.name()));
    }
    if (!(device.power_limit_min_w() >= 0) ||
        !(device.power_limit_max_w() >= device.power_limit_min_w()) ||
        !(device.idle_power_w() >= 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "register.node.devices[%d]: power limits must satisfy 0 <= min <= "
          "max and idle power must be >= 0 (node %s)",
          device.index(), node.name()));
    }
  }
  return absl::OkStatus();
}

// The GPUs of `sample` a Kubernetes pod holds outside Joule (the agent's
// --pod-resources-socket), by index: "namespace/pod".
std::map<int32_t, std::string> PodHeldGpus(const v1::NodeSample& sample) {
  std::map<int32_t, std::string> held;
  for (const v1::DeviceSample& device : sample.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU || !device.has_held_by()) continue;
    held[device.index()] =
        absl::StrCat(device.held_by().namespace_(), "/", device.held_by().pod());
  }
  return held;
}

// Whether two samples differ in which GPUs pods hold. Runs on every
// telemetry report: allocation-free unless some GPU is held.
bool PodHoldsChanged(const v1::NodeSample& before, const v1::NodeSample& after) {
  auto any_held = [](const v1::NodeSample& sample) {
    for (const v1::DeviceSample& device : sample.devices()) {
      if (device.kind() == v1::DEVICE_KIND_GPU && device.has_held_by()) return true;
    }
    return false;
  };
  if (!any_held(before) && !any_held(after)) return false;
  return PodHeldGpus(before) != PodHeldGpus(after);
}

}  // namespace

Scheduler::Scheduler(Store* store, const Clock* clock, SchedulerOptions options)
    : clock_(clock),
      options_(options),
      pipeline_(*PlacementPipeline::FromProfile(
          options.placement_profile.value_or(options.energy_aware_placement ? EnergyProfile()
                                                                            : FirstFitProfile()),
          PluginArgs{options.telemetry_freshness})),
      coolest_throttle_c_([&options] {
        double coolest = std::numeric_limits<double>::infinity();
        for (const GpuModelSpec& spec : options.gpu_catalog) {
          coolest = std::min(coolest, spec.throttle_temp_c);
        }
        return coolest;
      }()),
      rng_(options.random_seed),
      writer_(std::make_unique<GroupCommitWriter>(store, options.store_writes)) {}

Scheduler::~Scheduler() {
  // Before anything else goes: the last completions take mu_ and use the
  // state (and may send StartTasks on links still registered).
  writer_.reset();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    Store* store, const Clock* clock, SchedulerOptions options,
    const Store* initial_state) {
  if (options.placement_profile.has_value()) {
    absl::Status valid = ValidateProfile(*options.placement_profile);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("placement profile ",
                                                     options.placement_profile->name, ": ",
                                                     valid.message()));
    }
  }
  std::unique_ptr<Scheduler> scheduler(new Scheduler(store, clock, options));
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
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> entries =
      source.List(kJobKeyPrefix);
  if (!entries.ok()) return entries.status();
  const absl::Time now = clock_->Now();
  for (const auto& [key, value] : *entries) {
    v1::Job job;
    if (!job.ParseFromString(value)) {
      return absl::DataLossError(absl::StrCat("stored job ", key,
                                              " does not parse"));
    }
    const int64_t number = JobNumber(job.id());
    next_job_number_ = std::max(next_job_number_, number + 1);
    if (!job.request_id().empty()) request_to_job_[job.request_id()] = job.id();
    for (const v1::Task& task : job.tasks()) {
      task_to_job_[task.task_id()] = job.id();
      if (!IsActive(task.state())) continue;
      // The node is known again when its agent registers; until then it is
      // down and its silence counts toward the heartbeat timeout from now.
      NodeRecord& node = nodes_[task.node()];
      node.info.set_name(task.node());
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
    NodeRecord& node = nodes_[info.name()];
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

GroupCommitWriter::Done Scheduler::Locked(AfterWrite after) {
  if (options_.store_writes.inline_commits) {
    // The completion runs inside Enqueue, whose caller holds mu_.
    return [this, after = std::move(after)](const absl::Status& status) {
      mu_.AssertHeld();
      after(status);
    };
  }
  return [this, after = std::move(after)](const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    after(status);
  };
}

void Scheduler::Changed(v1::Job& job) {
  SumEnergy(job);
  (void)StoreJob(job);
  Notify(job);
}

absl::Status Scheduler::StoreJob(const v1::Job& job, AfterWrite after) {
  return WriteJobKey(job.id(),
                     StoreMutation{StoreMutation::Op::kPut, absl::StrCat(kJobKeyPrefix, job.id()),
                                   job.SerializeAsString()},
                     std::move(after));
}

absl::Status Scheduler::WriteJobKey(const std::string& job_id, StoreMutation mutation,
                                    AfterWrite after) {
  const int64_t write = next_write_++;
  // Counted before Enqueue: with inline commits the outcome comes inside it.
  JobWrites& writes = job_writes_[job_id];
  writes.latest = write;
  ++writes.in_flight;
  absl::StatusOr<GroupCommitWriter::Ticket> queued = writer_->Enqueue(
      {std::move(mutation)},
      Locked([this, job_id, write, after = std::move(after)](const absl::Status& status) {
        JobWritten(job_id, write, status);
        if (after) after(status);
      }));
  if (queued.ok()) return absl::OkStatus();
  // Refused outright, so never on its way. It stays the latest write: an
  // older one that succeeds does not make the job stored.
  auto it = job_writes_.find(job_id);
  if (it != job_writes_.end() && --it->second.in_flight == 0) job_writes_.erase(it);
  MarkUnstored(job_id, queued.status());
  return queued.status();
}

void Scheduler::JobWritten(const std::string& job_id, int64_t write,
                           const absl::Status& status) {
  bool latest = true;
  if (auto it = job_writes_.find(job_id); it != job_writes_.end()) {
    latest = it->second.latest == write;
    if (--it->second.in_flight == 0) job_writes_.erase(it);
  }
  if (!status.ok()) {
    MarkUnstored(job_id, status);
    return;
  }
  store_refusing_ = false;
  // Writes are done in the order they were queued: a newer state of the
  // job is still on its way, and its outcome decides.
  if (!latest) return;
  unstored_.erase(job_id);
  if (!store_error_.ok() && unstored_.empty()) {
    JLOG(INFO) << "store writes succeed again; every job is stored";
    store_error_ = absl::OkStatus();
  }
}

void Scheduler::MarkUnstored(const std::string& job_id, const absl::Status& status) {
  unstored_.insert(job_id);
  // A value refused outright concerns only its own job; anything else
  // (etcd down, this scheduler fenced, a failed fsync) every write alike.
  if (!absl::IsInvalidArgument(status)) store_refusing_ = true;
  // Once per failure streak: an etcd restart would otherwise log every job
  // at every tick.
  if (store_error_.ok()) {
    JLOG(ERROR) << "storing job " << job_id << " failed: " << status
                << "; jobs are kept in memory, written again at each tick until "
                   "the store takes them, and no task is started meanwhile";
  }
  store_error_ = status;
}

void Scheduler::StoreState(StoreMutation mutation, std::string what) {
  // Nobody waits for these: the failure is logged where it happens.
  absl::StatusOr<GroupCommitWriter::Ticket> queued =
      writer_->Enqueue({std::move(mutation)}, [what](const absl::Status& status) {
        if (!status.ok()) JLOG(ERROR) << what << ": " << status;
      });
  if (!queued.ok()) JLOG(ERROR) << what << ": " << queued.status();
}

void Scheduler::Notify(const v1::Job& job) {
  for (auto& [handle, watcher] : watchers_) {
    if (watcher.first == job.id()) watcher.second(job);
  }
}

void Scheduler::WriteUnstored() {
  const std::vector<std::string> ids(unstored_.begin(), unstored_.end());
  for (const std::string& id : ids) {
    // A write of the job is on its way; its outcome decides.
    if (job_writes_.contains(id)) continue;
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {
      // A submission the store refused: nobody was told its id, and its
      // write may have landed all the same (an unknown outcome), so the
      // store must forget it rather than recover it after a restart.
      (void)WriteJobKey(id, StoreMutation{StoreMutation::Op::kDelete,
                                          absl::StrCat(kJobKeyPrefix, id), ""},
                        nullptr);
    } else {
      // The latest state, not the one whose write failed.
      SumEnergy(it->second);
      (void)StoreJob(it->second);
    }
    // A store that is down refuses every job alike (and each try may wait
    // out a timeout): while it does, one write per tick asks whether it is
    // back. A value the store refuses outright concerns only its own job.
    if (store_refusing_) break;
  }
}

void Scheduler::AwaitStoreWrites() { writer_->Flush(); }

GroupCommitWriter::Stats Scheduler::StoreWriterStats() const { return writer_->GetStats(); }

Scheduler::StoreHealth Scheduler::GetStoreHealth() const {
  absl::MutexLock lock(&mu_);
  StoreHealth health;
  health.last_error = store_error_;
  health.unstored_jobs = static_cast<int>(unstored_.size());
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

absl::StatusOr<v1::Job> Scheduler::SubmitJob(v1::JobSpec spec,
                                             const std::string& request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request_id: %d bytes, at most %d", request_id.size(), kMaxRequestIdBytes));
  }
  ApplyJobSpecDefaults(&spec);
  const absl::Time now = clock_->Now();
  absl::Status valid = ValidateJobSpec(spec, now);
  if (!valid.ok()) return valid;

  v1::Job job;
  absl::StatusOr<GroupCommitWriter::Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    if (!request_id.empty()) {
      // A submission with this id still waiting for the store decides:
      // after it, the id names its job or (refused) nothing.
      auto settled = [this, &request_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !submitting_.contains(request_id);
      };
      mu_.Await(absl::Condition(&settled));
      auto seen = request_to_job_.find(request_id);
      if (seen != request_to_job_.end()) {
        const v1::Job& existing = jobs_.at(seen->second);
        if (existing.spec().SerializeAsString() != spec.SerializeAsString()) {
          return absl::AlreadyExistsError(absl::StrCat(
              "request_id ", request_id, " already created ", existing.id(),
              " from a different spec"));
        }
        return existing;
      }
    }
    // Taken for good: submissions that arrive while this one waits for the
    // store number theirs above it, and a refused job's number is skipped.
    const int64_t number = next_job_number_++;
    job.set_id(absl::StrCat("job-", number));
    *job.mutable_spec() = std::move(spec);
    job.set_state(v1::JOB_STATE_PENDING);
    job.set_message("waiting for placement");
    *job.mutable_submit_time() = ToProtoTime(now);
    job.set_request_id(request_id);
    // Present from the start, so that `joulectl get` can tell a job measured
    // without a carbon config (no currency) from one not yet measured.
    job.mutable_footprint()->set_currency(options_.carbon.currency());
    AddEvent(job, "Submitted", absl::StrCat("job ", job.spec().name(), " accepted"));
    // Durable before the client hears of it. Queued under the lock, waited
    // for without it: submissions arriving meanwhile share the commit.
    ticket = writer_->Enqueue({StoreMutation{StoreMutation::Op::kPut,
                                             absl::StrCat(kJobKeyPrefix, job.id()),
                                             job.SerializeAsString()}});
    if (!ticket.ok()) return ticket.status();
    if (!request_id.empty()) submitting_.insert(request_id);
  }
  const absl::Status stored = writer_->Wait(*ticket);
  absl::MutexLock lock(&mu_);
  if (!request_id.empty()) submitting_.erase(request_id);
  if (!stored.ok()) {
    // Nothing of the job is kept, and nobody learns its id. Its write's
    // outcome is unknown; WriteUnstored deletes whatever of it landed.
    MarkUnstored(job.id(), stored);
    return stored;
  }
  // Only now visible (get, list, cancel) and pending.
  if (!request_id.empty()) request_to_job_[request_id] = job.id();
  jobs_[job.id()] = job;
  AddPending(job);
  placement_dirty_ = true;
  return job;
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
  if (IsFinal(job.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " already ended (",
        v1::JobState_Name(job.state()), ")"));
  }
  const std::string why = reason.empty() ? "cancelled by the user" : reason;
  job.set_cancel_requested(true);
  AddEvent(job, "CancelRequested", why);
  for (v1::Task& task : *job.mutable_tasks()) {
    if (!IsActive(task.state())) continue;
    auto node = nodes_.find(task.node());
    if (node == nodes_.end() || !node->second.ready) {
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
  if (!StoreJob(job, [stored](const absl::Status&) { stored->Notify(); }).ok()) {
    stored->Notify();
  }
  Notify(job);
  return job;
}

v1::Node Scheduler::NodeToProto(const NodeRecord& node) const {
  v1::Node out;
  *out.mutable_info() = node.info;
  // A node whose stream is closed cannot take work: DOWN, with the message
  // saying it is waiting for the agent, until it reconnects or times out.
  const NodePowerManager::State power = node_power_.state(node.info.name());
  if (power == NodePowerManager::State::kSuspending ||
      power == NodePowerManager::State::kSuspended ||
      power == NodePowerManager::State::kResuming) {
    out.set_state(v1::NODE_STATE_SUSPENDED);
  } else {
    out.set_state(node.ready && node.link != nullptr ? v1::NODE_STATE_READY
                                                     : v1::NODE_STATE_DOWN);
  }
  out.set_message(node.message);
  if (node.last_seen != absl::Time()) {
    *out.mutable_last_seen() = ToProtoTime(node.last_seen);
  }
  *out.mutable_last_sample() = node.last_sample;
  for (const std::string& id : node.task_ids) out.add_task_ids(id);
  int gpus = 0;
  const std::map<int32_t, std::string> held = PodHeldGpus(node.last_sample);
  for (const v1::Device& device : node.info.devices()) {
    gpus += device.kind() == v1::DEVICE_KIND_GPU && !node.used_gpus.count(device.index()) &&
            !held.count(device.index());
  }
  out.set_free_gpus(gpus);
  out.set_free_cpus(node.info.cpus() - node.used_cpus);
  out.set_free_memory_bytes(node.info.memory_bytes() - node.used_memory_bytes);
  return out;
}

std::vector<v1::Node> Scheduler::ListNodes() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Node> out;
  for (const auto& [name, node] : nodes_) out.push_back(NodeToProto(node));
  return out;
}

absl::StatusOr<v1::Node> Scheduler::GetNode(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  }
  return NodeToProto(it->second);
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

void Scheduler::GetTaskLogs(const v1::GetTaskLogsRequest& request,
                            LogsCallback done) {
  std::function<void()> completion;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request.job_id());
    if (it == jobs_.end()) {
      completion = [done, id = request.job_id()] {
        done(absl::NotFoundError(absl::StrCat("job ", id, " not found")));
      };
    } else if (request.max_bytes() < 0 || request.max_bytes() > kMaxLogBytes) {
      completion = [done] {
        done(absl::InvalidArgumentError(
            absl::StrCat("max_bytes: must be in [0, ", kMaxLogBytes, "]")));
      };
    } else {
      const v1::Job& job = it->second;
      const int64_t max_bytes =
          request.max_bytes() == 0 ? kDefaultLogBytes : request.max_bytes();
      PendingLogs pending;
      pending.deadline = clock_->Now() + options_.logs_timeout;
      pending.done = done;
      const int64_t id = next_logs_request_++;
      for (const v1::Task& task : job.tasks()) {
        const bool wanted = request.task_id().empty()
                                ? task.attempt() == job.attempts()
                                : task.task_id() == request.task_id();
        if (!wanted) continue;
        v1::TaskLogs* logs = pending.response.add_logs();
        logs->set_task_id(task.task_id());
        logs->set_node(task.node());
        auto node = nodes_.find(task.node());
        if (node == nodes_.end() || !node->second.ready ||
            node->second.link == nullptr) {
          logs->set_error(absl::StrCat("node ", task.node(), " is down"));
          continue;
        }
        const std::string request_id = absl::StrCat(id, "/", task.task_id());
        pending.outstanding[request_id] = pending.response.logs_size() - 1;
        v1::SchedulerCommand command;
        command.mutable_fetch_logs()->set_request_id(request_id);
        command.mutable_fetch_logs()->set_task_id(task.task_id());
        command.mutable_fetch_logs()->set_max_bytes(max_bytes);
        node->second.link->Send(command);
      }
      if (!request.task_id().empty() && pending.response.logs_size() == 0) {
        completion = [done, request] {
          done(absl::NotFoundError(absl::StrCat(
              "task ", request.task_id(), " not found in job ",
              request.job_id())));
        };
      } else if (pending.outstanding.empty()) {
        completion = [done, response = pending.response] { done(response); };
      } else {
        pending_logs_[id] = std::move(pending);
      }
    }
  }
  if (completion) completion();
}

absl::Status Scheduler::SetNodeCap(const std::string& node_name, const v1::SetCap& cap) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", node_name, " not found"));
  }
  NodeRecord& node = it->second;
  if (!node.ready || node.link == nullptr) {
    return absl::UnavailableError(absl::StrCat("node ", node_name, " is down"));
  }
  const bool cpu = cap.kind() == v1::DEVICE_KIND_CPU;
  if (!cpu && cap.kind() != v1::DEVICE_KIND_GPU &&
      cap.kind() != v1::DEVICE_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("cap.kind: must be GPU or CPU");
  }
  if (!std::isfinite(cap.power_cap_w()) || cap.power_cap_w() < 0) {
    return absl::InvalidArgumentError("cap.power_cap_w: must be a finite number >= 0");
  }
  if (cap.max_frequency_mhz() < 0 || cap.min_frequency_mhz() < 0) {
    return absl::InvalidArgumentError("cap: frequencies must be >= 0");
  }
  if (cpu && cap.min_frequency_mhz() != 0) {
    return absl::InvalidArgumentError(
        "cap.min_frequency_mhz: only for GPUs (locked SM clocks)");
  }
  if (!cpu && cap.min_frequency_mhz() > cap.max_frequency_mhz()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cap: min_frequency_mhz (%d) must be <= max_frequency_mhz (%d)",
        cap.min_frequency_mhz(), cap.max_frequency_mhz()));
  }
  if (cap.power_cap_w() == 0 && cap.max_frequency_mhz() == 0) {
    return absl::InvalidArgumentError(
        "cap: give power_cap_w or max_frequency_mhz");
  }
  const v1::Device* device = nullptr;
  for (const v1::Device& candidate : node.info.devices()) {
    if (candidate.kind() == (cpu ? v1::DEVICE_KIND_CPU : v1::DEVICE_KIND_GPU) &&
        candidate.index() == cap.index()) {
      device = &candidate;
    }
  }
  if (device == nullptr) {
    return absl::NotFoundError(absl::StrFormat("node %s has no %s %d", node_name,
                                               cpu ? "CPU package" : "GPU", cap.index()));
  }
  if (cap.power_cap_w() > 0 && device->power_limit_max_w() > 0 &&
      (cap.power_cap_w() < device->power_limit_min_w() ||
       cap.power_cap_w() > device->power_limit_max_w())) {
    return absl::OutOfRangeError(absl::StrFormat(
        "cap.power_cap_w: %g W outside %s %d's allowed range [%g, %g] W",
        cap.power_cap_w(), cpu ? "CPU package" : "GPU", cap.index(),
        device->power_limit_min_w(), device->power_limit_max_w()));
  }
  if (cpu && cap.power_cap_w() > 0 && device->source() != "rapl") {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node_name, " has no RAPL power limit (CPU power is ",
        device->source(), ")"));
  }
  v1::SchedulerCommand command;
  *command.mutable_set_cap() = cap;
  if (command.set_cap().reason().empty()) command.mutable_set_cap()->set_reason("operator");
  node.link->Send(command);
  // Whatever reason the operator gave, the metric's label set stays fixed.
  if (options_.observer != nullptr) options_.observer->OnCapSent("operator");
  JLOG(INFO) << "cap sent to " << node_name << ": " << cap.ShortDebugString();
  return absl::OkStatus();
}

Scheduler::NodeRecord* Scheduler::FindNodeByLink(AgentLink* link) {
  auto it = link_to_node_.find(link);
  if (it == link_to_node_.end()) return nullptr;
  return it->second->link != link ? nullptr : it->second;
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
  NodeRecord& node = nodes_[task.node()];
  node.task_ids.insert(task.task_id());
  node_power_.SetIdle(task.node(), false, clock_->Now());
  for (int32_t gpu : task.gpu_indices()) node.used_gpus.insert(gpu);
  node.used_cpus += job.spec().resources().cpus();
  node.used_memory_bytes += job.spec().resources().memory_bytes();
}

void Scheduler::Release(const v1::Job& job, const v1::Task& task) {
  auto it = nodes_.find(task.node());
  if (it == nodes_.end() || !it->second.task_ids.erase(task.task_id())) return;
  placement_dirty_ = true;
  NodeRecord& node = it->second;
  for (int32_t gpu : task.gpu_indices()) node.used_gpus.erase(gpu);
  node.used_cpus = std::max(0.0, node.used_cpus - job.spec().resources().cpus());
  node.used_memory_bytes = std::max<int64_t>(
      0, node.used_memory_bytes - job.spec().resources().memory_bytes());
  if (node.task_ids.empty()) node_power_.SetIdle(task.node(), true, clock_->Now());
}

absl::Status Scheduler::OnAgentRegister(AgentLink* link,
                                        const v1::Register& message) {
  absl::Status valid = ValidateRegister(message);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  const std::string& name = message.node().name();
  NodeRecord& node = nodes_[name];
  if (node.link != nullptr && node.link != link) {
    JLOG(WARNING) << "node " << name
                  << " registered again; the newer stream replaces the old";
    link_to_node_.erase(node.link);
  }
  node.info = message.node();
  // Ceilings from the devices, and fresh counter baselines (the agent may
  // have started again).
  telemetry_guard_.Register(node.info);
  node.throttle_temp_c.clear();
  for (const v1::Device& device : node.info.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU) continue;
    if (auto spec = FindGpuModel(options_.gpu_catalog, device.model())) {
      node.throttle_temp_c[device.index()] = spec->throttle_temp_c;
    }
  }
  node.link = link;
  link_to_node_[link] = &node;
  node.ready = true;
  node.message = "";
  node.last_seen = clock_->Now();
  if (node_power_.Asleep(name) ||
      node_power_.state(name) == NodePowerManager::State::kFailed) {
    JLOG(INFO) << "node " << name << " resumed";
    StoreState(StoreMutation{StoreMutation::Op::kDelete,
                             absl::StrCat(internal::kSuspendedKeyPrefix, name), ""},
               absl::StrCat("forgetting suspended node ", name));
  }
  node_power_.Registered(name, node.task_ids.empty(), node.last_seen);
  // Telemetry is expected from now on; its age counts from here (a
  // re-registering agent is as fresh as a new one).
  node.last_telemetry = node.last_seen;
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
    NodeRecord* node = FindNodeByLink(link);
    if (node == nullptr) {
      return absl::FailedPreconditionError(
          "stream is not registered (or was replaced by a newer one)");
    }
    node->last_seen = clock_->Now();
    if (!node->ready) {
      node->ready = true;
      node->message = "";
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
        // A pod that let go of a GPU frees it for the next cycle.
        if (PodHoldsChanged(node->last_sample, message.telemetry())) {
          placement_dirty_ = true;
        }
        node->last_sample = message.telemetry();
        // A node whose readings had gone stale is placeable again.
        if (node->last_seen - node->last_telemetry > options_.telemetry_freshness) {
          placement_dirty_ = true;
        }
        node->last_telemetry = node->last_seen;
        if (message.telemetry().sources_size() > 0) {
          *node->info.mutable_sources() = message.telemetry().sources();
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
      case v1::AgentMessage::kLogs: {
        const v1::LogsReply& reply = message.logs();
        int64_t id = 0;
        const std::string prefix = reply.request_id().substr(
            0, reply.request_id().find('/'));
        auto pending = absl::SimpleAtoi(prefix, &id) ? pending_logs_.find(id)
                                                     : pending_logs_.end();
        if (pending == pending_logs_.end()) break;  // Late reply.
        auto slot = pending->second.outstanding.find(reply.request_id());
        if (slot == pending->second.outstanding.end()) break;
        v1::TaskLogs* logs = pending->second.response.mutable_logs(slot->second);
        // Only the node that runs the task may answer for it.
        if (logs->node() != node->info.name()) {
          JLOG(WARNING) << "node " << node->info.name() << " answered a logs request for "
                        << reply.task_id() << " on " << logs->node() << "; ignored";
          break;
        }
        logs->set_stdout(reply.stdout());
        logs->set_stderr(reply.stderr());
        logs->set_truncated(reply.truncated());
        logs->set_error(reply.error());
        pending->second.outstanding.erase(slot);
        if (pending->second.outstanding.empty()) {
          completion = [done = std::move(pending->second.done),
                        response = std::move(pending->second.response)] {
            done(response);
          };
          pending_logs_.erase(pending);
        }
        break;
      }
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
  NodeRecord* node = FindNodeByLink(link);
  link_to_node_.erase(link);
  if (node == nullptr) return;
  node->link = nullptr;
  if (node_power_.Disconnected(node->info.name()) ||
      node_power_.state(node->info.name()) == NodePowerManager::State::kSuspended) {
    node->ready = false;
    StoreState(StoreMutation{StoreMutation::Op::kPut,
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
  if (auto node = nodes_.find(task.node()); node != nodes_.end()) {
    auto label = node->second.info.labels().find(kRegionLabel);
    if (label != node->second.info.labels().end()) region = label->second;
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
    if (IsFinal(job.state()) &&
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
  for (const auto& [name, node] : nodes_) {
    NodeMetrics& metrics = out.nodes.emplace_back();
    metrics.name = name;
    metrics.ready = node.ready && node.link != nullptr;
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
  out.unstored_jobs = static_cast<int>(unstored_.size());
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
        } else if (unstored_.count(job->id()) > 0 || job_writes_.contains(job->id())) {
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
      v1::TaskState state;
      std::string message;
      if (event.kind() == v1::TaskEvent::KIND_START_FAILED && event.node_busy()) {
        // The node's state, not the task's fault: lost, so retried.
        state = v1::TASK_STATE_LOST;
        message = absl::StrCat("node ", node.info.name(), " could not take it: ",
                               event.message());
      } else if (event.kind() == v1::TaskEvent::KIND_START_FAILED) {
        state = v1::TASK_STATE_FAILED;
        message = absl::StrCat("could not start: ", event.message());
      } else if (event.stopped()) {
        state = v1::TASK_STATE_KILLED;
        message = "stopped by the scheduler";
      } else if (event.exit_code() == 0) {
        state = v1::TASK_STATE_SUCCEEDED;
      } else if (event.signal() != 0) {
        state = v1::TASK_STATE_FAILED;
        message = absl::StrCat("killed by signal ", event.signal());
      } else {
        state = v1::TASK_STATE_FAILED;
        message = absl::StrCat("exited with code ", event.exit_code());
      }
      EndTask(*job, *task, state, message);
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
  (void)StoreJob(job, [this, node, task_id](const absl::Status& stored) {
    if (!stored.ok()) return;
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.link == nullptr) return;
    v1::SchedulerCommand command;
    command.mutable_ack_task_event()->set_task_id(task_id);
    it->second.link->Send(command);
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
  AddEvent(job, absl::StrCat("Task", state == v1::TASK_STATE_SUCCEEDED ? "Succeeded"
                                     : state == v1::TASK_STATE_KILLED  ? "Killed"
                                     : state == v1::TASK_STATE_LOST    ? "Lost"
                                                                       : "Failed"),
           absl::StrCat("task ", task.task_id(),
                        message.empty() ? "" : ": ", message));
}

void Scheduler::StopTask(const v1::Task& task, const std::string& reason) {
  auto it = nodes_.find(task.node());
  if (it != nodes_.end()) SendStop(it->second, task.task_id(), reason);
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
  if (IsFinal(job.state()) || job.state() == v1::JOB_STATE_PENDING) {
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
  int active = 0, succeeded = 0, total = 0;
  const v1::Task* failed = nullptr;
  const v1::Task* lost = nullptr;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != job.attempts()) continue;
    ++total;
    if (IsActive(task.state())) ++active;
    if (task.state() == v1::TASK_STATE_SUCCEEDED) ++succeeded;
    if (task.state() == v1::TASK_STATE_FAILED && failed == nullptr) failed = &task;
    if (task.state() == v1::TASK_STATE_LOST && lost == nullptr) lost = &task;
  }
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
    int starting = 0;
    for (const v1::Task& task : job.tasks()) {
      starting += task.attempt() == job.attempts() &&
                  task.state() == v1::TASK_STATE_STARTING;
    }
    job.set_message(starting > 0 ? absl::StrFormat("starting (%d of %d tasks started)",
                                                   total - starting, total)
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
    // workload's own verdict.
    if (RetryOrFail(job, failed != nullptr ? *failed : *lost)) return;
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
  // The most recent finished jobs keep every node's verdict for `explain`;
  // older ones keep only the chosen node's.
  finished_explained_.push_back(job.id());
  if (finished_explained_.size() > kFullExplanationsKept) {
    TrimExplanation(finished_explained_.front());
    finished_explained_.pop_front();
  }
  AddEvent(job, v1::JobState_Name(job.state()).substr(strlen("JOB_STATE_")),
           job.message());
}

bool Scheduler::RetryOrFail(v1::Job& job, const v1::Task& cause) {
  // Specs stored before restart policies existed have none: the defaults.
  v1::RestartPolicy policy = job.spec().restart_policy();
  ApplyRestartPolicyDefaults(&policy);
  const bool lost = cause.state() == v1::TASK_STATE_LOST;
  const std::string what =
      lost ? absl::StrCat("task ", cause.task_id(), " lost (", cause.message(), ")")
           : absl::StrCat("task ", cause.task_id(), " ", cause.message());
  const v1::RetryOn ending = lost ? v1::RETRY_ON_LOST : v1::RETRY_ON_FAILED;
  if (std::find(policy.retry_on().begin(), policy.retry_on().end(), ending) ==
      policy.retry_on().end()) {
    job.set_state(v1::JOB_STATE_FAILED);
    job.set_message(lost ? absl::StrCat(what, "; lost tasks are not retried "
                                              "(restart_policy.retry_on)")
                         : what);
    return false;
  }
  if (job.retries() >= policy.max_retries()) {
    job.set_state(v1::JOB_STATE_FAILED);
    job.set_message(policy.max_retries() == 0
                        ? absl::StrCat(what, "; no retries allowed (restart_policy."
                                             "max_retries: 0)")
                        : absl::StrFormat("%s; %d retries exhausted", what,
                                          policy.max_retries()));
    return false;
  }
  // backoff_s x 2^(retries used), capped; doubling stops at the cap, so the
  // loop is short and cannot overflow.
  double wait_s = policy.backoff_s();
  for (int i = 0; i < job.retries() && wait_s < policy.max_backoff_s(); ++i) wait_s *= 2;
  const absl::Duration wait = absl::Seconds(std::min(wait_s, policy.max_backoff_s()));
  job.set_retries(job.retries() + 1);
  *job.mutable_not_before() = ToProtoTime(clock_->Now() + wait);
  job.set_state(v1::JOB_STATE_PENDING);
  job.set_message(absl::StrFormat(
      "%s; retry %d of %d %s", what, job.retries(), policy.max_retries(),
      wait == absl::ZeroDuration() ? "now" : absl::StrCat("in ", absl::FormatDuration(wait))));
  // The next attempt's split starts from the shards every attempt finished.
  sharders_.erase(job.id());
  AddPending(job);
  placement_dirty_ = true;
  AddEvent(job, "Retrying", job.message());
  return true;
}

void Scheduler::TrimExplanation(const std::string& job_id) {
  auto it = explanations_.find(job_id);
  if (it == explanations_.end()) return;
  auto trimmed = std::make_shared<v1::JobExplanation>(*it->second);
  // Swapped out rather than cleared: a cleared repeated field keeps its
  // elements allocated for reuse.
  google::protobuf::RepeatedPtrField<v1::PlacementCandidate> all;
  all.Swap(trimmed->mutable_candidates());
  for (const v1::PlacementCandidate& candidate : all) {
    if (candidate.chosen()) *trimmed->add_candidates() = candidate;
  }
  trimmed->set_note(
      "an older finished job: only the chosen node's scores are kept");
  it->second = std::move(trimmed);
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

void Scheduler::ExpireLogRequests(
    std::vector<std::function<void()>>* completions) {
  const absl::Time now = clock_->Now();
  for (auto it = pending_logs_.begin(); it != pending_logs_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    for (const auto& [request_id, index] : it->second.outstanding) {
      it->second.response.mutable_logs(index)->set_error(
          "timed out waiting for the agent");
    }
    completions->push_back([done = std::move(it->second.done),
                            response = std::move(it->second.response)] {
      done(response);
    });
    it = pending_logs_.erase(it);
  }
}

void Scheduler::Tick() {
  std::vector<std::function<void()>> completions;
  {
    absl::MutexLock lock(&mu_);
    // First, so that the store catches up before anything new is stored.
    WriteUnstored();
    const absl::Time now = clock_->Now();
    for (auto& [name, node] : nodes_) {
      if (node.ready || !node.task_ids.empty()) {
        const absl::Duration silent = now - node.last_seen;
        if (silent > options_.heartbeat_timeout &&
            (node.ready || node.link == nullptr)) {
          MarkNodeDown(node, absl::StrFormat("no heartbeat for %.1fs",
                                             absl::ToDoubleSeconds(silent)));
        }
      }
    }
    ExpireLogRequests(&completions);
    ManageNodePower();
    EndBackoffs();
    // A store that refuses writes would refuse every placement too.
    if (!store_refusing_) PlacePending();
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
    nodes_[name].message = "";
    placement_dirty_ = true;
  }
  for (const std::string& name : expired.resume_failed) {
    MarkNodeDown(nodes_[name],
                 absl::StrCat("did not resume within ",
                              absl::FormatDuration(options_.node_power.resume_timeout)));
    placement_dirty_ = true;
  }
  // Connected nodes with no task: nothing runs there and no placement holds
  // GPUs there (Bind allocates a task's resources before it is stored).
  std::map<std::string, int> eligible;
  for (const auto& [name, node] : nodes_) {
    if (!node.ready || node.link == nullptr || !node.task_ids.empty()) continue;
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
    nodes_[name].message = absl::StrCat("suspending: idle for ",
                                        absl::FormatDuration(options_.node_power.suspend_after),
                                        " or more");
    JLOG(INFO) << "suspending idle node " << name;
    options_.power_control->Suspend(name);
  }
}

ClusterSnapshot Scheduler::Snapshot() const {
  // Runs once per placement cycle over every node: no map built per node,
  // one power-state lookup, one pass over the last sample.
  ClusterSnapshot snapshot;
  snapshot.now = clock_->Now();
  snapshot.nodes.reserve(nodes_.size());
  const bool power_managed = PowerManaged();
  // Per device index of the node: the last sample's temperature, and the pod
  // that holds it.
  std::vector<const v1::DeviceSample*> samples;
  for (const auto& [name, node] : nodes_) {
    NodeView view;
    view.name = name;
    const NodePowerManager::State power = node_power_.state(name);
    view.ready = node.ready && node.link != nullptr &&
                 power != NodePowerManager::State::kSuspending;
    view.last_telemetry = node.last_telemetry;
    if (power_managed && (power == NodePowerManager::State::kSuspended ||
                          power == NodePowerManager::State::kResuming)) {
      // Placement may wake it: the job then waits for its agent to register.
      view.ready = true;
      view.asleep = true;
      view.last_telemetry = snapshot.now;
    }
    view.total_cpus = node.info.cpus();
    view.free_cpus = node.info.cpus() - node.used_cpus;
    view.total_memory_bytes = node.info.memory_bytes();
    view.free_memory_bytes = node.info.memory_bytes() - node.used_memory_bytes;
    view.static_power_w = node.info.static_power_w();
    view.running_tasks = static_cast<int>(node.task_ids.size());
    samples.clear();
    for (const v1::DeviceSample& sample : node.last_sample.devices()) {
      if (sample.kind() != v1::DEVICE_KIND_GPU || sample.index() < 0 || sample.index() > 1024) {
        continue;
      }
      if (samples.size() <= static_cast<size_t>(sample.index())) {
        samples.resize(sample.index() + 1, nullptr);
      }
      samples[sample.index()] = &sample;
    }
    view.gpus.reserve(node.info.devices_size());
    for (const v1::Device& device : node.info.devices()) {
      if (device.kind() != v1::DEVICE_KIND_GPU) continue;
      GpuView& gpu = view.gpus.emplace_back();
      gpu.index = device.index();
      gpu.model = device.model();
      gpu.free = !node.used_gpus.count(device.index());
      gpu.idle_power_w = device.idle_power_w();
      gpu.power_limit_default_w = device.power_limit_default_w();
      if (!node.throttle_temp_c.empty()) {
        auto throttle = node.throttle_temp_c.find(device.index());
        if (throttle != node.throttle_temp_c.end()) gpu.throttle_temp_c = throttle->second;
      }
      const v1::DeviceSample* sample =
          device.index() >= 0 && static_cast<size_t>(device.index()) < samples.size()
              ? samples[device.index()]
              : nullptr;
      if (sample != nullptr) {
        gpu.temp_c = sample->temp_c();
        // Not Joule's to place on while a pod holds it.
        if (sample->has_held_by()) {
          gpu.held_by = absl::StrCat(sample->held_by().namespace_(), "/", sample->held_by().pod());
          gpu.free = false;
        }
      }
      gpu.hot = gpu.temp_c >= gpu.throttle_temp_c - options_.thermal_margin_c;
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
  last_failed_.clear();
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
    PlacementResult result = pipeline_->Place(request, &snapshot);
    std::shared_ptr<const v1::JobExplanation> explanation = Explain(job, result);
    explanations_[job.id()] = explanation;
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
      last_failed_.emplace(entry->shape, explanation);
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
          nodes_[name].message = absl::StrCat("resuming for job ", job.id());
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
    RemovePending(job);
    absl::Status bound = Bind(job, result);
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
  return pipeline_->Place(request, &**drained).kind == PlacementResult::Kind::kPlaced;
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

std::shared_ptr<const v1::JobExplanation> Scheduler::Explain(
    const v1::Job& job, const PlacementResult& result) const {
  auto explanation = std::make_shared<v1::JobExplanation>();
  v1::JobExplanation& out = *explanation;
  out.set_job_id(job.id());
  switch (result.kind) {
    case PlacementResult::Kind::kPlaced:
      out.set_outcome("PLACED");
      break;
    case PlacementResult::Kind::kRetryLater:
      out.set_outcome("RETRY_LATER");
      break;
    case PlacementResult::Kind::kInfeasible:
      out.set_outcome("INFEASIBLE");
      break;
    case PlacementResult::Kind::kError:
      out.set_outcome("ERROR");
      break;
  }
  out.set_reason(result.reason);
  out.set_profile(pipeline_->profile_name());
  const CycleSummary& summary = result.summary;
  out.set_nodes_total(summary.nodes_total);
  out.set_nodes_filtered(summary.nodes_filtered);
  out.set_nodes_feasible(summary.nodes_feasible);
  out.set_sampled(summary.sampled);
  for (const RejectionCount& rejection : summary.rejections) {
    v1::RejectionCount* count = out.add_rejections();
    count->set_plugin(rejection.plugin);
    count->set_code(PluginCodeName(rejection.code));
    count->set_nodes(rejection.nodes);
    count->set_example(rejection.example);
  }
  const std::string chosen = result.replicas.empty() ? "" : result.replicas[0].node;
  for (const ScoredCandidate& top : summary.top) {
    v1::PlacementCandidate* candidate = out.add_candidates();
    candidate->set_node(top.node);
    for (const ScoreEntry& entry : top.scores) {
      v1::PluginScore* score = candidate->add_scores();
      score->set_plugin(entry.plugin);
      score->set_score(entry.score);
      score->set_weight(entry.weight);
    }
    candidate->set_total_score(top.total_score);
    candidate->set_chosen(top.node == chosen);
  }
  for (const ReplicaPlacement& replica : result.replicas) {
    out.add_replica_nodes(replica.node);
  }
  return explanation;
}

absl::StatusOr<v1::JobExplanation> Scheduler::ExplainJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto job = jobs_.find(job_id);
  if (job == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  }
  v1::JobExplanation out;
  std::shared_ptr<const v1::JobExplanation> source;
  if (auto it = explanations_.find(job_id); it != explanations_.end()) source = it->second;
  if (job->second.state() == v1::JOB_STATE_PENDING) {
    // The last cycle's verdict on the job's shape is the newest, also for a
    // job the cycle stopped before.
    auto shared = last_failed_.find(JobQueue::ShapeOf(job->second.spec()));
    if (shared != last_failed_.end()) source = shared->second;
  }
  if (source != nullptr) {
    out = *source;
    out.set_job_id(job_id);
  } else {
    out.set_job_id(job_id);
    out.set_note(
        "no placement cycle has examined this job since the scheduler started");
  }
  if (job->second.state() == v1::JOB_STATE_PENDING && job->second.has_not_before() &&
      FromProtoTime(job->second.not_before()) > clock_->Now()) {
    out.set_note(absl::StrCat(
        "waiting out its retry backoff: not placed before ",
        absl::FormatTime(absl::RFC3339_sec, FromProtoTime(job->second.not_before()),
                         absl::UTCTimeZone())));
  }
  // Today every task runs at its GPUs' default power limit and the spec's
  // default batch size; the energy brain fills these with its reasoning.
  const v1::Task* last = job->second.tasks().empty() ? nullptr
                                                     : &*job->second.tasks().rbegin();
  if (!job->second.cap_decision().empty()) out.set_cap_decision(job->second.cap_decision());
  if (out.cap_decision().empty() && last != nullptr) {
    out.set_cap_decision(last->power_cap_w() > 0
                             ? absl::StrFormat("%.0f W: the GPUs' default power limit",
                                               last->power_cap_w())
                             : "no GPU: no power cap");
  }
  if (!job->second.batch_decision().empty()) {
    out.set_batch_decision(job->second.batch_decision());
  } else {
    out.set_batch_decision(absl::StrFormat(
        "%d: the job's default batch size", job->second.spec().batch_size().default_size()));
  }
  return out;
}

absl::Status Scheduler::Bind(v1::Job& job, const PlacementResult& result) {
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
  const absl::Status queued = StoreJob(job, [this, placement](const absl::Status& stored) {
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
  NodeRecord& node = nodes_[task.node()];
  if (node.link != nullptr) node.link->Send(command);
}

}  // namespace joule
