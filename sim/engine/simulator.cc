#include "sim/engine/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <queue>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "common/proto_time.h"
#include "joule/v1/agent.pb.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/memory_store.h"
#include "sim/trace/workload_mapping.h"

namespace joule::sim {

std::string PolicyName(Policy policy) {
  switch (policy) {
    case Policy::kBaseline:
      return "baseline";
    case Policy::kCapOnly:
      return "cap-only";
    case Policy::kJoule:
      return "joule";
  }
  return "unknown";
}

absl::StatusOr<Policy> ParsePolicy(const std::string& name) {
  for (Policy policy : {Policy::kBaseline, Policy::kCapOnly, Policy::kJoule}) {
    if (PolicyName(policy) == name) return policy;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "policy ", name, ": expected baseline, cap-only or joule (the oracle is not a "
      "scheduler run; see ComputeOracle)"));
}

namespace {

// Virtual time zero: the trace's first arrival (2017-09-04 in Philly; the
// scheduler only needs a fixed, plausible instant).
const absl::Time kStart = absl::FromUnixSeconds(1504483200);

// Steady-state GPU temperature: 30 C ambient plus 45 C at the maximum power
// limit, linear in power. A stand-in that keeps every GPU below its throttle
// point (the tables hold no temperatures), so thermal back-off never fires.
double TemperatureC(double power_w, double max_w) {
  return 30 + 45 * std::min(1.0, power_w / max_w);
}

struct Gpu {
  int32_t index = 0;
  std::string model;
  double idle_w = 0;
  double min_w = 0;
  double max_w = 0;
  double default_w = 0;
  double cap_w = 0;
  double power_w = 0;
  double energy_j = 0;
  double last_s = 0;
  int task = -1;
  std::vector<PowerStep> steps;

  double EnergyAt(double t) const { return energy_j + power_w * (t - last_s); }
  void SetPower(double t, double watts, bool record) {
    energy_j = EnergyAt(t);
    last_s = t;
    power_w = watts;
    if (record) steps.push_back({t, watts});
  }
};

struct Task {
  std::string id;
  int job = -1;
  int node = -1;
  int32_t replica = 0;
  int32_t attempt = 0;
  std::vector<int32_t> gpus;
  double start_s = 0;
  std::vector<double> gpu_energy_at_start;
  double static_share_w = 0;
  bool alive = true;
};

struct JobRun {
  std::string scheduler_id;
  int32_t attempt = 0;
  int32_t batch = 0;
  std::vector<int> tasks;  // of the current attempt
  double epochs_total = 0;
  double epochs_done = 0;
  double rate = 0;  // epochs per second
  double last_s = 0;
  uint64_t version = 0;
  bool running = false;
  bool finished = false;
  double start_s = -1;
  double end_s = -1;
  double energy_j = 0;
  double gpu_energy_j = 0;

  double EpochsAt(double t) const {
    return std::min(epochs_total, epochs_done + rate * (t - last_s));
  }
};

enum class Kind { kArrival, kCompletion, kTelemetry, kBurst, kTick, kResumed };

struct Event {
  double t = 0;
  uint64_t seq = 0;
  Kind kind = Kind::kTick;
  int64_t target = 0;
  uint64_t version = 0;
  bool operator>(const Event& other) const {
    return t != other.t ? t > other.t : seq > other.seq;
  }
};

}  // namespace

class Simulator::Impl {
 public:
  Impl(const WorkModel* model, ClusterConfig cluster, std::vector<SimJob> jobs,
       SimOptions options)
      : model_(model),
        cluster_(std::move(cluster)),
        jobs_(std::move(jobs)),
        runs_(jobs_.size()),
        options_(options),
        clock_(kStart) {}

  absl::StatusOr<PolicyRun> Run();
  std::vector<DeviceEnergy> Devices() const;
  int64_t cap_changes() const { return cap_changes_; }
  int64_t suspends() const { return suspends_; }
  int64_t resumes() const { return resumes_; }

 private:
  class Link : public AgentLink {
   public:
    Link(Impl* impl, int node) : impl_(impl), node_(node) {}
    // Called with the scheduler's lock held: only queues.
    void Send(const v1::SchedulerCommand& command) override {
      impl_->commands_.emplace_back(node_, command);
    }

   private:
    Impl* impl_;
    int node_;
  };

  // Runs the scheduler's suspend and resume commands on the simulated nodes.
  // Called with the scheduler's lock held: only queues.
  class PowerControl : public NodePowerControl {
   public:
    explicit PowerControl(Impl* impl) : impl_(impl) {}
    void Suspend(const std::string& node) override { impl_->power_commands_.push_back({node, true}); }
    void Resume(const std::string& node) override { impl_->power_commands_.push_back({node, false}); }

   private:
    Impl* impl_;
  };

  struct Node {
    std::string name;
    double static_w = 0;
    // Static power drawn now (standby while suspended), and its integral up
    // to static_since.
    double static_now_w = 0;
    double static_j = 0;
    double static_since = 0;
    bool suspended = false;
    bool resuming = false;
    v1::Register registration;

    double StaticEnergyAt(double t) const { return static_j + static_now_w * (t - static_since); }
    void SetStatic(double t, double watts) {
      static_j = StaticEnergyAt(t);
      static_since = t;
      static_now_w = watts;
    }
    std::vector<Gpu> gpus;
    std::unique_ptr<Link> link;
    std::vector<int> tasks;
    double burst_until = -1;
    bool burst_scheduled = false;
  };

  void Push(double t, Kind kind, int64_t target, uint64_t version = 0) {
    events_.push(Event{t, next_seq_++, kind, target, version});
  }
  void SetNow(double t) {
    now_s_ = t;
    clock_.Set(kStart + absl::Seconds(t));
  }
  v1::JobSpec SpecOf(const SimJob& job) const;
  absl::Status RegisterNodes();
  absl::Status Deliver(int node, const v1::AgentMessage& message);
  // Handles every queued command (which may queue more).
  absl::Status Drain();
  absl::Status Handle(int node, const v1::SchedulerCommand& command);
  // Suspends a node (its stream closes) or starts its resume.
  absl::Status HandlePower(const std::string& node, bool suspend);
  absl::Status Resumed(int node);
  absl::Status StartTask(int node, const v1::StartTask& start);
  absl::Status StopTask(int node, const std::string& task_id);
  absl::Status SetCap(int node, const v1::SetCap& cap);
  // A batch-size hint to a running training job: the share of the work done
  // is kept, the rest takes the epochs to target of the new batch size.
  absl::Status ChangeBatch(const v1::UpdateHints& hints);
  // Brings the job's progress to now and re-derives its speed, its GPUs'
  // power and its completion event from the GPUs' caps.
  absl::Status Recompute(int job);
  absl::Status Complete(int job);
  absl::Status SendTelemetry(int node);
  void Burst(int node);
  v1::TaskUsage Usage(const Task& task, bool final_usage) const;
  void ReleaseGpus(Task& task);

  const WorkModel* model_;
  ClusterConfig cluster_;
  std::vector<SimJob> jobs_;
  std::vector<JobRun> runs_;
  SimOptions options_;
  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<Node> nodes_;
  std::vector<Task> tasks_;
  absl::flat_hash_map<std::string, int> job_by_id_;
  absl::flat_hash_map<std::string, int> task_by_id_;
  std::deque<std::pair<int, v1::SchedulerCommand>> commands_;
  std::deque<std::pair<std::string, bool>> power_commands_;  // node, suspend
  PowerControl power_control_{this};
  absl::flat_hash_map<std::string, int> node_by_name_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t next_seq_ = 0;
  double now_s_ = 0;
  bool tick_needed_ = false;
  int64_t processed_ = 0;
  int64_t cap_changes_ = 0;
  int64_t suspends_ = 0;
  int64_t resumes_ = 0;
  int64_t pid_ = 1000;
  size_t finished_ = 0;
  double end_s_ = 0;
  v1::AgentMessage message_;  // reused for telemetry
};

v1::JobSpec Simulator::Impl::SpecOf(const SimJob& job) const {
  v1::JobSpec spec;
  spec.set_name(absl::StrCat("philly-", job.trace.id));
  spec.set_type(v1::JOB_TYPE_TRAINING);
  spec.set_command("simulated");
  spec.add_args(job.workload);
  spec.set_replicas(job.replicas);
  spec.mutable_resources()->set_gpus(job.gpus_per_replica);
  spec.mutable_batch_size()->set_min(job.batch_min);
  spec.mutable_batch_size()->set_default_size(job.batch_default);
  spec.mutable_batch_size()->set_max(job.batch_max);
  spec.set_user(job.trace.cluster);
  switch (options_.policy) {
    case Policy::kBaseline:
      spec.set_job_class(job.workload);
      break;
    case Policy::kCapOnly:
      // Zeus's JIT power-limit optimizer profiles every job afresh, and
      // picks the least GPU energy within 1.10x of the fastest cap.
      spec.set_job_class(absl::StrCat("job-", job.trace.id));
      spec.mutable_objective()->set_max_slowdown(1.10);
      break;
    case Policy::kJoule: {
      // Every job of a workload is a recurrence of one class, whatever its
      // size: its declared size puts the costs of all sizes on one scale.
      spec.set_job_class(job.workload);
      if (options_.max_slowdown > 0) spec.mutable_objective()->set_max_slowdown(options_.max_slowdown);
      if (options_.size_error >= 0) {
        std::mt19937_64 gen(SplitMix64(options_.seed ^ SplitMix64(job.trace.id ^ 0x5e5e)));
        const double error =
            options_.size_error > 0
                ? std::exp(std::normal_distribution<double>(0, options_.size_error)(gen))
                : 1.0;
        spec.set_expected_samples(job.epochs_ref * SamplesPerEpoch(job.workload) * error);
      }
      break;
    }
  }
  return spec;
}

absl::Status Simulator::Impl::RegisterNodes() {
  for (const NodeType& type : cluster_.node_types) {
    const std::string model(type.gpu_model);
    absl::optional<GpuModelSpec> spec = FindGpuModel(options_.gpu_catalog, model);
    if (!spec) return absl::NotFoundError(absl::StrCat("GPU model ", model, " not in the catalog"));
    for (int32_t i = 0; i < type.count; ++i) {
      Node node;
      node.name = absl::StrCat(type.name, "-", i);
      node.static_w = type.static_power_w;
      node.static_now_w = node.static_w;
      for (int32_t g = 0; g < type.gpus_per_node; ++g) {
        Gpu gpu;
        gpu.index = g;
        gpu.model = model;
        gpu.idle_w = spec->idle_power_w;
        gpu.min_w = spec->power_limit_min_w;
        gpu.max_w = spec->power_limit_max_w;
        gpu.default_w = spec->power_limit_default_w;
        gpu.cap_w = gpu.default_w;
        gpu.SetPower(0, gpu.idle_w, options_.record_power_steps);
        node.gpus.push_back(std::move(gpu));
      }
      node.link = std::make_unique<Link>(this, static_cast<int>(nodes_.size()));
      nodes_.push_back(std::move(node));
    }
  }
  for (size_t n = 0; n < nodes_.size(); ++n) {
    const Node& node = nodes_[n];
    v1::Register reg;
    v1::NodeInfo* info = reg.mutable_node();
    info->set_name(node.name);
    info->set_cpus(64);
    info->set_memory_bytes(int64_t{512} << 30);
    info->set_static_power_w(node.static_w);
    info->set_agent_version("joule-sim");
    for (const Gpu& gpu : node.gpus) {
      v1::Device* device = info->add_devices();
      device->set_index(gpu.index);
      device->set_kind(v1::DEVICE_KIND_GPU);
      device->set_model(gpu.model);
      device->set_uuid(absl::StrCat("GPU-sim-", node.name, "-", gpu.index));
      device->set_memory_bytes(FindGpuModel(options_.gpu_catalog, gpu.model)->memory_bytes);
      device->set_power_limit_min_w(gpu.min_w);
      device->set_power_limit_default_w(gpu.default_w);
      device->set_power_limit_max_w(gpu.max_w);
      device->set_idle_power_w(gpu.idle_w);
      device->set_source("simulated");
    }
    node_by_name_[node.name] = static_cast<int>(n);
    nodes_[n].registration = reg;
    absl::Status registered = scheduler_->OnAgentRegister(node.link.get(), reg);
    if (!registered.ok()) return registered;
    // Stagger the nodes' telemetry over one period.
    Push(absl::ToDoubleSeconds(options_.telemetry_period) * (n + 1) / nodes_.size(),
         Kind::kTelemetry, n);
  }
  return Drain();
}

absl::Status Simulator::Impl::Deliver(int node, const v1::AgentMessage& message) {
  absl::Status status = scheduler_->OnAgentMessage(nodes_[node].link.get(), message);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("scheduler refused a message from ",
                                            nodes_[node].name, ": ", status.message()));
  }
  return Drain();
}

absl::Status Simulator::Impl::Drain() {
  while (!commands_.empty() || !power_commands_.empty()) {
    if (!commands_.empty()) {
      std::pair<int, v1::SchedulerCommand> next = std::move(commands_.front());
      commands_.pop_front();
      absl::Status status = Handle(next.first, next.second);
      if (!status.ok()) return status;
      continue;
    }
    std::pair<std::string, bool> next = std::move(power_commands_.front());
    power_commands_.pop_front();
    absl::Status status = HandlePower(next.first, next.second);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Simulator::Impl::HandlePower(const std::string& name, bool suspend) {
  auto found = node_by_name_.find(name);
  if (found == node_by_name_.end()) {
    return absl::InternalError(absl::StrCat("power command for unknown node ", name));
  }
  const int index = found->second;
  Node& node = nodes_[index];
  if (suspend) {
    if (node.suspended) return absl::OkStatus();
    if (!node.tasks.empty()) {
      return absl::InternalError(
          absl::StrCat("the scheduler suspended ", name, " while it runs a task"));
    }
    node.suspended = true;
    ++suspends_;
    node.SetStatic(now_s_, options_.standby_power_w);
    for (Gpu& gpu : node.gpus) gpu.SetPower(now_s_, 0, options_.record_power_steps);
    scheduler_->OnAgentDisconnect(node.link.get());
    return absl::OkStatus();
  }
  if (!node.suspended || node.resuming) return absl::OkStatus();
  node.resuming = true;
  // A booting server draws its full static power, and its GPUs their idle
  // power, from the resume command on.
  node.SetStatic(now_s_, node.static_w);
  for (Gpu& gpu : node.gpus) gpu.SetPower(now_s_, gpu.idle_w, options_.record_power_steps);
  Push(now_s_ + absl::ToDoubleSeconds(options_.resume_time), Kind::kResumed, index);
  return absl::OkStatus();
}

absl::Status Simulator::Impl::Resumed(int index) {
  Node& node = nodes_[index];
  node.suspended = false;
  node.resuming = false;
  ++resumes_;
  absl::Status registered = scheduler_->OnAgentRegister(node.link.get(), node.registration);
  if (!registered.ok()) return registered;
  tick_needed_ = true;
  return Drain();
}

absl::Status Simulator::Impl::Handle(int node, const v1::SchedulerCommand& command) {
  switch (command.cmd_case()) {
    case v1::SchedulerCommand::kStartTask:
      return StartTask(node, command.start_task());
    case v1::SchedulerCommand::kStopTask:
      return StopTask(node, command.stop_task().task_id());
    case v1::SchedulerCommand::kSetCap:
      return SetCap(node, command.set_cap());
    case v1::SchedulerCommand::kUpdateHints:
      return ChangeBatch(command.update_hints());
    default:
      // Register acks, event acks, hints for training tasks (no early stop
      // is configured) and log fetches need no simulated action.
      return absl::OkStatus();
  }
}

absl::Status Simulator::Impl::StartTask(int node_index, const v1::StartTask& start) {
  auto found = job_by_id_.find(start.job_id());
  if (found == job_by_id_.end()) {
    return absl::InternalError(absl::StrCat("start for unknown job ", start.job_id()));
  }
  const int job = found->second;
  JobRun& run = runs_[job];
  if (start.attempt() != run.attempt) {
    // A new attempt after a lost one: the work starts over.
    for (int t : run.tasks) ReleaseGpus(tasks_[t]);
    run = JobRun{run.scheduler_id};
    run.attempt = start.attempt();
  }
  Node& node = nodes_[node_index];
  Task task;
  task.id = start.task_id();
  task.job = job;
  task.node = node_index;
  task.replica = start.replica_index();
  task.attempt = start.attempt();
  task.start_s = now_s_;
  task.gpus.assign(start.gpu_indices().begin(), start.gpu_indices().end());
  task.static_share_w = node.static_w * task.gpus.size() / node.gpus.size();
  const int task_index = static_cast<int>(tasks_.size());
  for (int32_t index : task.gpus) {
    if (index < 0 || index >= static_cast<int32_t>(node.gpus.size())) {
      return absl::InternalError(absl::StrCat("start on missing GPU ", index));
    }
    Gpu& gpu = node.gpus[index];
    if (gpu.task >= 0) {
      return absl::InternalError(absl::StrCat("GPU ", index, " of ", node.name,
                                              " given to ", task.id, " while ",
                                              tasks_[gpu.task].id, " holds it"));
    }
    gpu.task = task_index;
    gpu.cap_w = std::clamp(start.power_cap_w(), gpu.min_w, gpu.max_w);
    task.gpu_energy_at_start.push_back(gpu.EnergyAt(now_s_));
  }
  tasks_.push_back(std::move(task));
  task_by_id_[start.task_id()] = task_index;
  node.tasks.push_back(task_index);
  run.tasks.push_back(task_index);
  run.batch = start.batch_size();

  v1::AgentMessage message;
  v1::TaskEvent* event = message.mutable_task_event();
  event->set_task_id(start.task_id());
  event->set_job_id(start.job_id());
  event->set_kind(v1::TaskEvent::KIND_STARTED);
  *event->mutable_time() = ToProtoTime(clock_.Now());
  event->set_pid(++pid_);
  absl::Status delivered = Deliver(node_index, message);
  if (!delivered.ok()) return delivered;

  if (static_cast<int32_t>(run.tasks.size()) == jobs_[job].replicas) {
    absl::StatusOr<double> epochs = model_->Epochs(jobs_[job], run.batch);
    if (!epochs.ok()) return epochs.status();
    run.epochs_total = *epochs;
    run.epochs_done = 0;
    run.last_s = now_s_;
    run.running = true;
    if (run.start_s < 0) run.start_s = now_s_;
    absl::Status recomputed = Recompute(job);
    if (!recomputed.ok()) return recomputed;
  }
  Burst(node_index);
  return absl::OkStatus();
}

absl::Status Simulator::Impl::StopTask(int node_index, const std::string& task_id) {
  auto found = task_by_id_.find(task_id);
  if (found == task_by_id_.end() || !tasks_[found->second].alive) return absl::OkStatus();
  Task& task = tasks_[found->second];
  JobRun& run = runs_[task.job];
  if (run.running) {
    run.epochs_done = run.EpochsAt(now_s_);
    run.last_s = now_s_;
    run.rate = 0;
    run.running = false;
    ++run.version;
  }
  v1::AgentMessage message;
  v1::TaskEvent* event = message.mutable_task_event();
  event->set_task_id(task.id);
  event->set_job_id(run.scheduler_id);
  event->set_kind(v1::TaskEvent::KIND_EXITED);
  *event->mutable_time() = ToProtoTime(clock_.Now());
  event->set_exit_code(128 + 15);
  event->set_signal(15);
  event->set_stopped(true);
  *event->mutable_usage() = Usage(task, false);
  ReleaseGpus(task);
  return Deliver(node_index, message);
}

absl::Status Simulator::Impl::SetCap(int node_index, const v1::SetCap& cap) {
  Node& node = nodes_[node_index];
  if (cap.kind() != v1::DEVICE_KIND_GPU || cap.index() < 0 ||
      cap.index() >= static_cast<int32_t>(node.gpus.size())) {
    return absl::OkStatus();
  }
  Gpu& gpu = node.gpus[cap.index()];
  const double cap_w = std::clamp(cap.power_cap_w(), gpu.min_w, gpu.max_w);
  if (cap_w == gpu.cap_w) return absl::OkStatus();
  gpu.cap_w = cap_w;
  ++cap_changes_;
  Burst(node_index);
  if (gpu.task >= 0 && runs_[tasks_[gpu.task].job].running) {
    return Recompute(tasks_[gpu.task].job);
  }
  return absl::OkStatus();
}

absl::Status Simulator::Impl::ChangeBatch(const v1::UpdateHints& hints) {
  auto found = task_by_id_.find(hints.task_id());
  if (found == task_by_id_.end() || hints.batch_size() <= 0) return absl::OkStatus();
  const int job = tasks_[found->second].job;
  JobRun& run = runs_[job];
  if (!run.running || run.batch == hints.batch_size()) return absl::OkStatus();
  absl::StatusOr<double> epochs = model_->Epochs(jobs_[job], hints.batch_size());
  if (!epochs.ok()) return epochs.status();
  const double share_done = run.EpochsAt(now_s_) / run.epochs_total;
  run.batch = hints.batch_size();
  run.epochs_total = *epochs;
  run.epochs_done = share_done * *epochs;
  run.last_s = now_s_;
  return Recompute(job);
}

absl::Status Simulator::Impl::Recompute(int job_index) {
  const SimJob& job = jobs_[job_index];
  JobRun& run = runs_[job_index];
  run.epochs_done = run.EpochsAt(now_s_);
  run.last_s = now_s_;
  // Each GPU at its own cap; the job goes at the slowest one's pace.
  struct Share {
    Gpu* gpu;
    EpochCost cost;
  };
  std::vector<Share> shares;
  double slowest = 0;
  for (int t : run.tasks) {
    Node& node = nodes_[tasks_[t].node];
    for (int32_t index : tasks_[t].gpus) {
      Gpu& gpu = node.gpus[index];
      absl::StatusOr<EpochCost> cost = model_->Cost(job, gpu.model, gpu.cap_w, run.batch);
      if (!cost.ok()) return cost.status();
      slowest = std::max(slowest, cost->seconds);
      shares.push_back({&gpu, *cost});
    }
  }
  for (const Share& share : shares) {
    const double dynamic = std::max(0.0, share.cost.average_power_w - share.gpu->idle_w);
    share.gpu->SetPower(now_s_, share.gpu->idle_w + dynamic * share.cost.seconds / slowest,
                        options_.record_power_steps);
  }
  run.rate = job.TotalGpus() / slowest;
  ++run.version;
  Push(now_s_ + (run.epochs_total - run.epochs_done) / run.rate, Kind::kCompletion,
       job_index, run.version);
  return absl::OkStatus();
}

v1::TaskUsage Simulator::Impl::Usage(const Task& task, bool final_usage) const {
  const JobRun& run = runs_[task.job];
  const SimJob& job = jobs_[task.job];
  const double share = static_cast<double>(task.gpus.size()) / job.TotalGpus();
  const double per_epoch = SamplesPerEpoch(job.workload) * share;
  const double epochs = final_usage ? run.epochs_total : run.EpochsAt(now_s_);
  v1::TaskUsage usage;
  usage.set_task_id(task.id);
  usage.set_samples_done(epochs * per_epoch);
  usage.set_samples_total(run.epochs_total * per_epoch);
  if (run.batch > 0) usage.set_steps_done(std::floor(epochs * per_epoch / run.batch));
  usage.set_target_reached(final_usage);
  const Node& node = nodes_[task.node];
  double gpu_j = 0;
  for (size_t i = 0; i < task.gpus.size(); ++i) {
    gpu_j += node.gpus[task.gpus[i]].EnergyAt(now_s_) - task.gpu_energy_at_start[i];
  }
  const double static_j = task.static_share_w * (now_s_ - task.start_s);
  usage.mutable_energy()->set_gpu_j(gpu_j);
  usage.mutable_energy()->set_static_j(static_j);
  usage.mutable_energy()->set_total_j(gpu_j + static_j);
  return usage;
}

void Simulator::Impl::ReleaseGpus(Task& task) {
  if (!task.alive) return;
  task.alive = false;
  Node& node = nodes_[task.node];
  for (int32_t index : task.gpus) {
    Gpu& gpu = node.gpus[index];
    gpu.task = -1;
    gpu.cap_w = gpu.default_w;  // The agent restores the default at task end.
    gpu.SetPower(now_s_, gpu.idle_w, options_.record_power_steps);
  }
  const int index = static_cast<int>(&task - tasks_.data());
  node.tasks.erase(std::remove(node.tasks.begin(), node.tasks.end(), index),
                   node.tasks.end());
}

absl::Status Simulator::Impl::Complete(int job_index) {
  JobRun& run = runs_[job_index];
  run.epochs_done = run.epochs_total;
  run.last_s = now_s_;
  run.running = false;
  run.finished = true;
  run.end_s = now_s_;
  end_s_ = std::max(end_s_, now_s_);
  ++finished_;
  for (int t : run.tasks) {
    Task& task = tasks_[t];
    v1::AgentMessage message;
    v1::TaskEvent* event = message.mutable_task_event();
    event->set_task_id(task.id);
    event->set_job_id(run.scheduler_id);
    event->set_kind(v1::TaskEvent::KIND_EXITED);
    *event->mutable_time() = ToProtoTime(clock_.Now());
    event->set_exit_code(0);
    *event->mutable_usage() = Usage(task, true);
    run.energy_j += event->usage().energy().total_j();
    run.gpu_energy_j += event->usage().energy().gpu_j();
    ReleaseGpus(task);
    absl::Status delivered = Deliver(task.node, message);
    if (!delivered.ok()) return delivered;
  }
  tick_needed_ = true;
  return absl::OkStatus();
}

absl::Status Simulator::Impl::SendTelemetry(int node_index) {
  const Node& node = nodes_[node_index];
  message_.Clear();
  v1::NodeSample* sample = message_.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(clock_.Now());
  double node_w = node.static_w;
  for (const Gpu& gpu : node.gpus) {
    v1::DeviceSample* device = sample->add_devices();
    device->set_index(gpu.index);
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_power_w(gpu.power_w);
    device->set_energy_j(gpu.EnergyAt(now_s_));
    device->set_temp_c(TemperatureC(gpu.power_w, gpu.max_w));
    device->set_utilization(gpu.task >= 0 ? 1.0 : 0.0);
    device->set_power_cap_w(gpu.cap_w);
    device->set_source("simulated");
    node_w += gpu.power_w;
  }
  sample->set_node_power_w(node_w);
  for (int t : node.tasks) *sample->add_tasks() = Usage(tasks_[t], false);
  return Deliver(node_index, message_);
}

void Simulator::Impl::Burst(int node_index) {
  Node& node = nodes_[node_index];
  node.burst_until =
      std::max(node.burst_until, now_s_ + absl::ToDoubleSeconds(options_.burst_length));
  if (!node.burst_scheduled) {
    node.burst_scheduled = true;
    Push(now_s_ + absl::ToDoubleSeconds(options_.burst_period), Kind::kBurst, node_index);
  }
}

absl::StatusOr<PolicyRun> Simulator::Impl::Run() {
  const auto wall_start = std::chrono::steady_clock::now();
  SchedulerOptions options;
  options.random_seed = options_.seed;
  options.gpu_catalog = options_.gpu_catalog;
  options.profile_caps = options_.policy != Policy::kBaseline;
  options.learn_batch_size = options_.policy == Policy::kJoule;
  options.caps_count_static_power =
      options_.policy == Policy::kJoule && options_.caps_count_static_power;
  if (options_.suspend_after > absl::ZeroDuration()) {
    options.node_power.suspend_after = options_.suspend_after;
    // A resume that takes twice its expected time has failed.
    options.node_power.resume_timeout = 2 * options_.resume_time;
    options.power_control = &power_control_;
  }
  options.energy_aware_placement = options_.policy == Policy::kJoule;
  // Telemetry is sparser than a real agent's, so a node counts as fresh and
  // alive for three periods.
  options.telemetry_freshness = 3 * options_.telemetry_period;
  options.heartbeat_timeout = 3 * options_.telemetry_period;
  // Store writes on the simulator's thread, done when the call that made
  // them returns: a writer thread would send StartTasks (into commands_,
  // which only this thread reads) at times no virtual clock controls.
  options.store_writes.inline_commits = true;
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(&store_, &clock_, options);
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = *std::move(scheduler);
  SetNow(0);
  absl::Status status = RegisterNodes();
  if (!status.ok()) return status;
  for (size_t j = 0; j < jobs_.size(); ++j) Push(jobs_[j].trace.arrival_s, Kind::kArrival, j);
  Push(absl::ToDoubleSeconds(options_.tick_period), Kind::kTick, 0);
  const double last_arrival = jobs_.empty() ? 0 : jobs_.back().trace.arrival_s;
  const double limit_s = last_arrival + absl::ToDoubleSeconds(options_.drain_limit);

  while (!events_.empty() && finished_ < jobs_.size()) {
    const Event event = events_.top();
    events_.pop();
    if (event.t > limit_s) break;
    SetNow(event.t);
    ++processed_;
    switch (event.kind) {
      case Kind::kArrival: {
        const int job = static_cast<int>(event.target);
        absl::StatusOr<v1::Job> submitted = scheduler_->SubmitJob(SpecOf(jobs_[job]));
        if (!submitted.ok()) {
          return absl::InternalError(absl::StrCat("scheduler refused trace job ",
                                                  jobs_[job].trace.id, ": ",
                                                  submitted.status().message()));
        }
        runs_[job].scheduler_id = submitted->id();
        job_by_id_[submitted->id()] = job;
        tick_needed_ = true;
        break;
      }
      case Kind::kCompletion:
        if (runs_[event.target].running && runs_[event.target].version == event.version) {
          status = Complete(static_cast<int>(event.target));
        }
        break;
      case Kind::kResumed:
        status = Resumed(static_cast<int>(event.target));
        break;
      case Kind::kTelemetry:
        if (!nodes_[event.target].suspended) status = SendTelemetry(static_cast<int>(event.target));
        Push(event.t + absl::ToDoubleSeconds(options_.telemetry_period), Kind::kTelemetry,
             event.target);
        break;
      case Kind::kBurst: {
        Node& node = nodes_[event.target];
        node.burst_scheduled = false;
        if (!node.suspended) status = SendTelemetry(static_cast<int>(event.target));
        const double next = event.t + absl::ToDoubleSeconds(options_.burst_period);
        if (next <= node.burst_until + 1e-9) {
          node.burst_scheduled = true;
          Push(next, Kind::kBurst, event.target);
        }
        break;
      }
      case Kind::kTick:
        tick_needed_ = true;
        Push(event.t + absl::ToDoubleSeconds(options_.tick_period), Kind::kTick, 0);
        break;
    }
    if (!status.ok()) return status;
    if (tick_needed_) {
      tick_needed_ = false;
      scheduler_->Tick();
      status = Drain();
      if (!status.ok()) return status;
    }
  }
  SetNow(std::max(now_s_, end_s_));

  PolicyRun result;
  result.policy = PolicyName(options_.policy);
  result.events = processed_;
  result.makespan_s = end_s_;
  double cluster_j = 0;
  for (const Node& node : nodes_) {
    cluster_j += node.StaticEnergyAt(end_s_);
    for (const Gpu& gpu : node.gpus) cluster_j += gpu.EnergyAt(end_s_);
  }
  result.cluster_energy_j = cluster_j;
  for (size_t j = 0; j < jobs_.size(); ++j) {
    const JobRun& run = runs_[j];
    JobOutcome outcome;
    outcome.trace_id = jobs_[j].trace.id;
    outcome.workload = jobs_[j].workload;
    outcome.gpus = jobs_[j].TotalGpus();
    outcome.arrival_s = jobs_[j].trace.arrival_s;
    outcome.start_s = run.start_s;
    outcome.end_s = run.end_s;
    outcome.energy_j = run.energy_j;
    outcome.gpu_energy_j = run.gpu_energy_j;
    outcome.finished = run.finished;
    result.jobs.push_back(std::move(outcome));
  }
  result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return result;
}

std::vector<DeviceEnergy> Simulator::Impl::Devices() const {
  std::vector<DeviceEnergy> out;
  for (const Node& node : nodes_) {
    for (const Gpu& gpu : node.gpus) {
      out.push_back({node.name, gpu.index, gpu.EnergyAt(now_s_), gpu.steps});
    }
  }
  return out;
}

Simulator::Simulator(const WorkModel* model, ClusterConfig cluster, std::vector<SimJob> jobs,
                     SimOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(cluster), std::move(jobs), options)) {}

Simulator::~Simulator() = default;

absl::StatusOr<PolicyRun> Simulator::Run() { return impl_->Run(); }

std::vector<DeviceEnergy> Simulator::Devices() const { return impl_->Devices(); }

int64_t Simulator::cap_changes() const { return impl_->cap_changes(); }

int64_t Simulator::suspends() const { return impl_->suspends(); }

int64_t Simulator::resumes() const { return impl_->resumes(); }

}  // namespace joule::sim
