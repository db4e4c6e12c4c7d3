#include "agent/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/process/task_cgroup.h"
#include "agent/rendezvous.h"
#include "contract/contract.h"
#include "common/files.h"
#include "common/log.h"
#include "common/range_list.h"
#include "common/proto_time.h"

namespace joule {
namespace {

constexpr int64_t kMaxProgressReadBytes = 1 << 20;

// Task ids become directory names: allow only a safe alphabet.
bool SafeTaskId(const std::string& id) {
  if (id.empty() || id.size() > 200 || id == "." || id == "..") return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}


// Sets `key` in a task's environment, replacing an earlier entry: later
// sources win (the agent's, then the user's, the job's, the contract's).
void SetEnv(std::vector<std::pair<std::string, std::string>>& env, const std::string& key,
            const std::string& value) {
  for (auto& [k, v] : env) {
    if (k == key) {
      v = value;
      return;
    }
  }
  env.emplace_back(key, value);
}

TaskUserPolicy UserPolicy(const AgentOptions& options) {
  TaskUserPolicy policy;
  policy.min_uid = options.min_task_uid;
  policy.allow_root = options.allow_root_tasks;
  policy.agent_uid = geteuid();
  return policy;
}

void AddEnergy(v1::Energy* energy, double gpu_j, double cpu_j, double static_j) {
  energy->set_gpu_j(energy->gpu_j() + gpu_j);
  energy->set_cpu_j(energy->cpu_j() + cpu_j);
  energy->set_static_j(energy->static_j() + static_j);
  energy->set_total_j(energy->gpu_j() + energy->cpu_j() + energy->static_j());
}

}  // namespace

Agent::Agent(AgentOptions options, std::vector<std::unique_ptr<GpuDevice>> gpus,
             std::unique_ptr<CpuSource> cpu, const Clock* clock,
             CapJournal* journal, AgentObserver* observer)
    : options_(std::move(options)),
      users_(options_.task_users, UserPolicy(options_)),
      workspace_(options_.work_dir),
      reaper_(options_.procfs_root),
      clock_(clock),
      journal_(journal),
      observer_(observer),
      gpus_(std::move(gpus)),
      cpu_(std::move(cpu)) {
  absl::MutexLock lock(&mu_);
  last_account_ = clock_->Now();
  if (observer_ != nullptr) {
    std::vector<v1::Device> devices;
    for (auto& gpu : gpus_) devices.push_back(gpu->Describe());
    if (cpu_ != nullptr) {
      for (v1::Device& device : cpu_->Describe()) devices.push_back(std::move(device));
    }
    observer_->OnDevices(devices);
  }
  for (auto& gpu : gpus_) {
    const std::string source = gpu->Describe().source();
    absl::StatusOr<v1::DeviceSample> sample = gpu->Sample(last_account_);
    if (sample.ok()) {
      last_gpu_energy_j_[sample->index()] = sample->energy_j();
      SourceOkLocked(source);
    } else {
      ReadErrorLocked(source, sample.status());
    }
  }
  if (cpu_ != nullptr) {
    // The first reading sets the baselines.
    absl::StatusOr<CpuReading> reading = cpu_->Sample(last_account_);
    if (reading.ok()) {
      last_cpu_samples_ = reading->samples;
      SourceOkLocked(cpu_->name());
    } else {
      ReadErrorLocked(cpu_->name(), reading.status());
    }
  }
}

void Agent::SourceOk(const std::string& name) {
  absl::MutexLock lock(&mu_);
  SourceOkLocked(name);
}

void Agent::SourceError(const std::string& name, const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  ReadErrorLocked(name, error);
}

void Agent::SourceAbsent(const std::string& name, const std::string& why) {
  absl::MutexLock lock(&mu_);
  v1::SourceStatus& status = sources_[name];
  status.set_name(name);
  status.set_state(v1::SourceStatus::STATE_ABSENT);
  status.set_message(why);
}

void Agent::SourceOkLocked(const std::string& name) {
  v1::SourceStatus& status = sources_[name];
  if (status.state() == v1::SourceStatus::STATE_DEGRADED) {
    JLOG(INFO) << "source " << name << " recovered";
  }
  status.set_name(name);
  status.set_state(v1::SourceStatus::STATE_OK);
  status.clear_message();
}

void Agent::SourceErrorLocked(const std::string& name, const absl::Status& error) {
  v1::SourceStatus& status = sources_[name];
  const std::string message(error.message());
  if (status.state() != v1::SourceStatus::STATE_DEGRADED || status.message() != message) {
    JLOG(WARNING) << "source " << name << " degraded: " << message;
  }
  status.set_name(name);
  status.set_state(v1::SourceStatus::STATE_DEGRADED);
  status.set_message(message);
  status.set_errors(status.errors() + 1);
}

void Agent::ReadErrorLocked(const std::string& name, const absl::Status& error) {
  SourceErrorLocked(name, error);
  if (observer_ != nullptr) observer_->OnReadError(name);
}

std::vector<v1::SourceStatus> Agent::Sources() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::SourceStatus> out;
  for (const auto& [name, status] : sources_) out.push_back(status);
  return out;
}

void Agent::SetCpuSettings(std::map<std::string, CpuSetting> settings) {
  absl::MutexLock lock(&mu_);
  cpu_settings_ = std::move(settings);
}

void Agent::SetCpuCap(const v1::SetCap& set_cap) {
  if (set_cap.power_cap_w() > 0) {
    const std::string key =
        absl::StrCat("cpu/package", set_cap.index(), "/power_limit_uw");
    absl::Status status = ChangeCpuSetting(key, set_cap.power_cap_w() * 1e6);
    if (!status.ok()) JLOG(WARNING) << "set-cap refused: " << status;
  }
  if (set_cap.max_frequency_mhz() > 0) {
    int policies = 0;
    for (const auto& [key, setting] : cpu_settings_) {
      if (!absl::EndsWith(key, "/max_freq_khz")) continue;
      ++policies;
      absl::Status status = ChangeCpuSetting(key, set_cap.max_frequency_mhz() * 1000.0);
      if (!status.ok()) JLOG(WARNING) << "set-cap refused: " << status;
    }
    if (policies == 0) JLOG(WARNING) << "set-cap: no cpufreq policy to cap";
  }
}

absl::Status Agent::ChangeCpuSetting(const std::string& key, double value) {
  auto it = cpu_settings_.find(key);
  if (it == cpu_settings_.end()) {
    return absl::NotFoundError(absl::StrCat("no CPU setting ", key, " on this node"));
  }
  absl::StatusOr<double> original = it->second.read();
  if (!original.ok()) return original.status();
  if (journal_ != nullptr) {
    absl::Status recorded = journal_->Record(key, *original);
    if (!recorded.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "not changing ", key, ": cannot journal the original: ", recorded.message()));
    }
  }
  return it->second.write(value);
}

int Agent::RestoreCpuSettings() {
  if (journal_ == nullptr) return 0;
  int restored = 0;
  const std::map<std::string, double> entries = journal_->entries();
  for (const auto& [key, original] : entries) {
    if (!absl::StartsWith(key, "cpu/")) continue;
    auto it = cpu_settings_.find(key);
    if (it == cpu_settings_.end()) {
      JLOG(WARNING) << "journal entry " << key << " names a setting that is not "
                    << "here; forgetting it";
      (void)journal_->Forget(key);
      continue;
    }
    absl::Status written = it->second.write(original);
    if (!written.ok()) {
      JLOG(ERROR) << "cannot restore " << key << " to " << original << ": " << written;
      continue;
    }
    (void)journal_->Forget(key);
    ++restored;
  }
  return restored;
}

void Agent::SetSink(MessageSink* sink) {
  absl::MutexLock lock(&mu_);
  sink_ = sink;
}

void Agent::SetGpuHolders(std::map<int32_t, v1::KubernetesContainer> holders) {
  absl::MutexLock lock(&mu_);
  auto name = [](const v1::KubernetesContainer& holder) {
    return absl::StrCat(holder.namespace_(), "/", holder.pod(), " (container ",
                        holder.container(), ")");
  };
  for (const auto& [index, holder] : holders) {
    auto before = gpu_holders_.find(index);
    if (before != gpu_holders_.end() && name(before->second) == name(holder)) continue;
    JLOG(INFO) << "GPU " << index << " is held by pod " << name(holder);
    for (const auto& [id, task] : tasks_) {
      const auto& gpus = task.spec.gpu_indices();
      if (std::find(gpus.begin(), gpus.end(), index) != gpus.end()) {
        JLOG(WARNING) << "GPU " << index << " of task " << id
                      << " is also held by pod " << name(holder)
                      << ": the kubelet gave a pod a GPU Joule uses";
      }
    }
  }
  for (const auto& [index, holder] : gpu_holders_) {
    if (!holders.count(index)) {
      JLOG(INFO) << "GPU " << index << " is no longer held by pod " << name(holder);
    }
  }
  gpu_holders_ = std::move(holders);
}

int Agent::running_tasks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tasks_.size());
}

std::string Agent::TaskDir(const std::string& task_id) const {
  return workspace_.TaskDir(task_id);
}

GpuDevice* Agent::Gpu(int32_t index) {
  for (auto& gpu : gpus_) {
    if (gpu->Describe().index() == index) return gpu.get();
  }
  return nullptr;
}

v1::Register Agent::MakeRegister() {
  absl::MutexLock lock(&mu_);
  v1::Register reg;
  v1::NodeInfo* node = reg.mutable_node();
  node->set_name(options_.node_name);
  for (const auto& [key, value] : options_.labels) (*node->mutable_labels())[key] = value;
  for (auto& gpu : gpus_) *node->add_devices() = gpu->Describe();
  if (cpu_ != nullptr) {
    for (const v1::Device& device : cpu_->Describe()) *node->add_devices() = device;
  }
  for (const auto& [name, status] : sources_) *node->add_sources() = status;
  node->set_cpus(options_.cpus);
  node->set_memory_bytes(options_.memory_bytes);
  node->set_static_power_w(options_.static_power_w);
  node->set_agent_version("joule-agent 0.1");
  node->set_address(options_.address);
  node->set_task_port_min(options_.task_port_min);
  node->set_task_port_max(options_.task_port_max);
  for (const auto& [id, task] : tasks_) {
    v1::RunningTask* running = reg.add_running_tasks();
    running->set_task_id(id);
    running->set_job_id(task.spec.job_id());
    running->set_pid(task.process->pid());
    *running->mutable_start_time() = ToProtoTime(task.start_time);
    *running->mutable_usage() = task.usage;
  }
  for (const auto& [id, event] : unacked_) *reg.add_unacked_events() = event;
  return reg;
}

void Agent::Emit(const v1::TaskEvent& event) {
  if (event.kind() == v1::TaskEvent::KIND_EXITED ||
      event.kind() == v1::TaskEvent::KIND_START_FAILED) {
    unacked_[event.task_id()] = event;
  }
  if (sink_ == nullptr) return;
  v1::AgentMessage message;
  *message.mutable_task_event() = event;
  sink_->Send(message);
}

void Agent::HandleCommand(const v1::SchedulerCommand& command) {
  absl::MutexLock lock(&mu_);
  switch (command.cmd_case()) {
    case v1::SchedulerCommand::kRegisterAck:
      break;
    case v1::SchedulerCommand::kStartTask:
      StartTask(command.start_task());
      break;
    case v1::SchedulerCommand::kStopTask:
      StopTask(command.stop_task());
      break;
    case v1::SchedulerCommand::kSetCap:
      SetCap(command.set_cap());
      break;
    case v1::SchedulerCommand::kUpdateHints:
      UpdateHints(command.update_hints());
      break;
    case v1::SchedulerCommand::kAckTaskEvent:
      unacked_.erase(command.ack_task_event().task_id());
      break;
    case v1::SchedulerCommand::kFetchLogs:
      FetchLogs(command.fetch_logs());
      break;
    case v1::SchedulerCommand::CMD_NOT_SET:
      JLOG(WARNING) << "ignoring an empty command from the scheduler";
      break;
  }
}

absl::Status Agent::WriteHints(const Task& task) {
  contract::Hints hints;
  if (task.batch_size > 0) hints.batch_size = task.batch_size;
  // The scheduler formats the set; one it could not have sent is left out.
  if (absl::StatusOr<std::set<int>> shards = ParseRangeList(task.shards); shards.ok()) {
    hints.shards = *std::move(shards);
  }
  hints.stop = task.stop_hint;
  // Simulated accelerators: the slowest of the task's devices sets its pace.
  double speed = 0;
  for (int32_t index : task.spec.gpu_indices()) {
    GpuDevice* gpu = Gpu(index);
    if (gpu == nullptr || !gpu->SimulatedSpeed()) continue;
    speed = speed == 0 ? *gpu->SimulatedSpeed()
                       : std::min(speed, *gpu->SimulatedSpeed());
  }
  if (speed > 0) hints.device_speed = speed;
  return workspace_.WriteHints(task.spec.task_id(), task.identity.gid,
                              contract::FormatHints(hints));
}

void Agent::StartTask(const v1::StartTask& start) {
  const absl::Time now = clock_->Now();
  v1::TaskEvent event;
  event.set_task_id(start.task_id());
  event.set_job_id(start.job_id());
  *event.mutable_time() = ToProtoTime(now);
  if (!SafeTaskId(start.task_id())) {
    JLOG(WARNING) << "refusing a start with a malformed task id";
    event.set_kind(v1::TaskEvent::KIND_START_FAILED);
    event.set_message("malformed task id");
    Emit(event);
    return;
  }
  // Idempotent per attempt: a start for a task already started is answered
  // with what happened, never a second process.
  if (started_.count(start.task_id())) {
    auto running = tasks_.find(start.task_id());
    if (running != tasks_.end()) {
      event.set_kind(v1::TaskEvent::KIND_STARTED);
      event.set_pid(running->second.process->pid());
      Emit(event);
    } else if (auto done = unacked_.find(start.task_id()); done != unacked_.end()) {
      Emit(done->second);
    }
    return;
  }
  started_.insert(start.task_id());
  // Close the books first: energy until now belongs to the tasks already
  // running, not to this one.
  Account(now, nullptr);

  std::string problem;
  bool node_busy = false;
  absl::StatusOr<TaskIdentity> identity = users_.Resolve(start.user());
  if (!identity.ok()) {
    problem = absl::StrCat("refusing to start the task: ", identity.status().message());
  } else {
    for (int32_t index : start.gpu_indices()) {
      if (Gpu(index) == nullptr) problem = absl::StrCat("no GPU with index ", index);
    }
  }
  // A GPU a Kubernetes pod took since the scheduler's last view of it: the
  // task would share it with the pod. Refused as the node's state, so the
  // job is placed again rather than failed.
  for (int32_t index : start.gpu_indices()) {
    auto holder = gpu_holders_.find(index);
    if (problem.empty() && holder != gpu_holders_.end()) {
      problem = absl::StrCat("GPU ", index, " is held by Kubernetes pod ",
                             holder->second.namespace_(), "/", holder->second.pod());
      node_busy = true;
    }
  }
  // Replica 0 holds the gang's rendezvous port while it runs: in this
  // node's range, not another task's, and free (another program on the
  // node may have it). Refused as the node's state: the retry gets another.
  if (problem.empty() && start.master_port() > 0 && start.replica_index() == 0) {
    const int32_t port = start.master_port();
    bool held = false;
    for (const auto& [id, other] : tasks_) {
      held |= other.spec.replica_index() == 0 && other.spec.master_port() == port;
    }
    absl::Status free = CheckPortFree(port);
    if (port < options_.task_port_min || port > options_.task_port_max) {
      problem = absl::StrFormat("rendezvous port %d is outside this node's range %d-%d", port,
                                options_.task_port_min, options_.task_port_max);
    } else if (held) {
      problem = absl::StrFormat("rendezvous port %d is held by another task", port);
    } else if (!free.ok()) {
      problem = std::string(free.message());
    }
    node_busy = !problem.empty();
  }
  Task task;
  task.spec = start;
  if (identity.ok()) task.identity = *identity;
  task.dir = workspace_.TaskDir(start.task_id());
  task.progress_path = task.dir + "/progress";
  task.hints_path = workspace_.HintsPath(start.task_id());
  task.batch_size = start.batch_size();
  task.shards = start.shards();
  task.usage.set_task_id(start.task_id());
  if (problem.empty()) {
    absl::Status made =
        workspace_.MakeTaskDir(start.task_id(), task.identity.uid, task.identity.gid);
    if (!made.ok()) problem = std::string(made.message());
  }
  if (problem.empty()) {
    for (int32_t index : start.gpu_indices()) {
      GpuDevice* gpu = Gpu(index);
      if (start.power_cap_w() > 0) {
        absl::Status capped = ChangeGpuCap(*gpu, start.power_cap_w(), now);
        if (!capped.ok()) {
          JLOG(WARNING) << "task " << start.task_id() << ": " << capped
                        << "; keeping " << gpu->power_limit_w() << " W";
        }
      }
    }
    // Busy before the hints are written: a simulated device's speed is that
    // of a loaded device.
    for (int32_t index : start.gpu_indices()) Gpu(index)->SetBusy(true, now);
    absl::Status hints = WriteHints(task);
    if (!hints.ok()) problem = std::string(hints.message());
  }
  if (problem.empty()) {
    SpawnOptions spawn;
    spawn.path = start.command();
    spawn.args.assign(start.args().begin(), start.args().end());
    spawn.env = options_.base_env;
    SetEnv(spawn.env, "USER", task.identity.user);
    SetEnv(spawn.env, "LOGNAME", task.identity.user);
    if (!task.identity.home.empty()) SetEnv(spawn.env, "HOME", task.identity.home);
    for (const auto& [key, value] : start.env()) SetEnv(spawn.env, key, value);
    std::vector<std::pair<std::string, std::string>> contract = {
        {contract::kJobId, start.job_id()},
        {contract::kTaskId, start.task_id()},
        {contract::kTaskDir, task.dir},
        {contract::kReplicaIndex, absl::StrCat(start.replica_index())},
        {contract::kReplicaCount, absl::StrCat(start.replica_count())},
        {contract::kBatchSize, absl::StrCat(start.batch_size())},
        {contract::kShards, start.shards()},
        {contract::kShardCount, absl::StrCat(start.shard_count())},
        {contract::kProgressFile, task.progress_path},
        {contract::kHintsFile, task.hints_path},
        {contract::kCudaVisibleDevices, absl::StrJoin(start.gpu_indices(), ",")},
        // torch.distributed and torchrun: one replica per node.
        {contract::kWorldSize, absl::StrCat(start.replica_count())},
        {contract::kRank, absl::StrCat(start.replica_index())},
        {contract::kLocalRank, "0"},
        {contract::kLocalWorldSize, "1"},
    };
    if (start.master_port() > 0) {
      contract.push_back({contract::kMasterAddr,
                          start.master_addr().empty() ? "127.0.0.1" : start.master_addr()});
      contract.push_back({contract::kMasterPort, absl::StrCat(start.master_port())});
    }
    for (const auto& [key, value] : contract) SetEnv(spawn.env, key, value);
    spawn.working_dir = start.working_dir().empty() ? task.dir : start.working_dir();
    spawn.stdout_path = task.dir + "/stdout.log";
    spawn.stderr_path = task.dir + "/stderr.log";
    if (users_.switches_user()) {
      spawn.credentials =
          ProcessCredentials{task.identity.uid, task.identity.gid, task.identity.groups};
    }
    spawn.no_new_privs = true;
    spawn.cgroup_dir = MakeTaskCgroup(start.task_id());
    absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(spawn);
    if (!process.ok()) {
      problem = std::string(process.status().message());
      if (!spawn.cgroup_dir.empty()) (void)TaskCgroup(spawn.cgroup_dir).Remove();
    } else {
      task.process = *std::move(process);
      task.cgroup_dir = spawn.cgroup_dir;
    }
  }
  if (!problem.empty()) {
    JLOG(WARNING) << "task " << start.task_id() << " could not start: " << problem;
    workspace_.RemoveHints(start.task_id());
    // A pod's GPU was never taken: nothing of it to give back.
    if (!node_busy) ReleaseGpus(start, now);
    event.set_kind(v1::TaskEvent::KIND_START_FAILED);
    event.set_exit_code(127);
    event.set_message(problem);
    event.set_node_busy(node_busy);
    Emit(event);
    return;
  }
  task.start_time = now;
  if (!task.cgroup_dir.empty()) SourceOkLocked("cgroup");
  absl::StatusOr<double> cpu = TaskCpuSeconds(task);
  task.last_cpu_seconds = cpu.ok() ? *cpu : 0;
  event.set_kind(v1::TaskEvent::KIND_STARTED);
  event.set_pid(task.process->pid());
  JLOG(INFO) << "started task " << start.task_id() << " (pid "
             << task.process->pid() << ", user " << task.identity.user << ", uid "
             << task.identity.uid << ")";
  tasks_.emplace(start.task_id(), std::move(task));
  Emit(event);
}

void Agent::StopTask(const v1::StopTask& stop) {
  auto it = tasks_.find(stop.task_id());
  if (it == tasks_.end()) return;  // Already ended: its exit is reported.
  absl::Duration grace = FromProtoDuration(stop.grace_period());
  if (grace <= absl::ZeroDuration()) grace = absl::Seconds(10);
  JLOG(INFO) << "stopping task " << stop.task_id() << ": " << stop.reason();
  it->second.process->Terminate(clock_->Now(), grace);
}

void Agent::SetCap(const v1::SetCap& set_cap) {
  if (set_cap.kind() == v1::DEVICE_KIND_CPU) {
    SetCpuCap(set_cap);
    return;
  }
  GpuDevice* gpu = Gpu(set_cap.index());
  if (gpu == nullptr) {
    JLOG(WARNING) << "set-cap for unknown GPU " << set_cap.index();
    return;
  }
  if (set_cap.max_frequency_mhz() > 0) {
    absl::Status locked = LockGpuClocks(*gpu, set_cap.min_frequency_mhz(),
                                        set_cap.max_frequency_mhz());
    if (!locked.ok()) JLOG(WARNING) << "clock lock refused: " << locked;
  }
  if (set_cap.power_cap_w() <= 0) return;
  absl::Status status = ChangeGpuCap(*gpu, set_cap.power_cap_w(), clock_->Now());
  if (!status.ok()) {
    JLOG(WARNING) << "set-cap refused: " << status;
    return;
  }
  for (auto& [id, task] : tasks_) {
    const auto& gpus = task.spec.gpu_indices();
    if (std::find(gpus.begin(), gpus.end(), set_cap.index()) != gpus.end()) {
      absl::Status hints = WriteHints(task);
      if (!hints.ok()) JLOG(WARNING) << hints;
    }
  }
}

void Agent::UpdateHints(const v1::UpdateHints& update) {
  auto it = tasks_.find(update.task_id());
  if (it == tasks_.end()) return;
  Task& task = it->second;
  if (update.batch_size() > 0) task.batch_size = update.batch_size();
  task.shards = update.shards();
  task.stop_hint = update.stop();
  absl::Status hints = WriteHints(task);
  if (!hints.ok()) JLOG(WARNING) << hints;
}

void Agent::FetchLogs(const v1::FetchLogs& fetch) {
  v1::AgentMessage message;
  v1::LogsReply* reply = message.mutable_logs();
  reply->set_request_id(fetch.request_id());
  reply->set_task_id(fetch.task_id());
  if (!SafeTaskId(fetch.task_id())) {
    reply->set_error("malformed task id");
  } else {
    const std::string dir = TaskDir(fetch.task_id());
    bool truncated_out = false, truncated_err = false;
    absl::StatusOr<std::string> out =
        ReadFileTail(dir + "/stdout.log", fetch.max_bytes(), &truncated_out);
    absl::StatusOr<std::string> err =
        ReadFileTail(dir + "/stderr.log", fetch.max_bytes(), &truncated_err);
    if (out.ok()) reply->set_stdout(*out);
    if (err.ok()) reply->set_stderr(*err);
    reply->set_truncated(truncated_out || truncated_err);
    if (!out.ok()) reply->set_error(std::string(out.status().message()));
  }
  if (sink_ != nullptr) sink_->Send(message);
}

void Agent::ReleaseGpus(const v1::StartTask& spec, absl::Time now) {
  for (int32_t index : spec.gpu_indices()) {
    GpuDevice* gpu = Gpu(index);
    if (gpu == nullptr) continue;
    gpu->SetBusy(false, now);
    RestoreGpuCap(*gpu, now);
  }
}

std::string Agent::GpuCapKey(const GpuDevice& gpu) const {
  const v1::Device device = gpu.Describe();
  return absl::StrCat("gpu/", device.uuid().empty() ? absl::StrCat(device.index())
                                                    : device.uuid(),
                      "/power_limit_w");
}

absl::Status Agent::ChangeGpuCap(GpuDevice& gpu, double watts, absl::Time now) {
  if (watts == gpu.power_limit_w()) return absl::OkStatus();
  // Journal the original first: a crash after the change must leave a way
  // back on disk.
  if (journal_ != nullptr) {
    absl::Status recorded = journal_->Record(GpuCapKey(gpu), gpu.power_limit_w());
    if (!recorded.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "not changing the cap: cannot journal the original: ", recorded.message()));
    }
  }
  absl::Status set = gpu.SetPowerLimit(watts, now);
  if (!set.ok()) SourceErrorLocked(gpu.Describe().source(), set);
  return set;
}

absl::Status Agent::LockGpuClocks(GpuDevice& gpu, int32_t min_mhz, int32_t max_mhz) {
  // Locked clocks cannot be read back through NVML: the journal entry (value
  // 1) is the only record that they must be reset.
  if (journal_ != nullptr) {
    absl::Status recorded = journal_->Record(GpuClocksKey(gpu), 1);
    if (!recorded.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "not locking clocks: cannot journal it: ", recorded.message()));
    }
  }
  return gpu.LockClocks(min_mhz, max_mhz);
}

std::string Agent::GpuClocksKey(const GpuDevice& gpu) const {
  const v1::Device device = gpu.Describe();
  return absl::StrCat("gpu/", device.uuid().empty() ? absl::StrCat(device.index())
                                                    : device.uuid(),
                      "/locked_clocks");
}

void Agent::RestoreGpuCap(GpuDevice& gpu, absl::Time now) {
  if (journal_ != nullptr && journal_->entries().count(GpuClocksKey(gpu))) {
    absl::Status reset = gpu.ResetClocks();
    if (reset.ok()) {
      (void)journal_->Forget(GpuClocksKey(gpu));
    } else {
      JLOG(ERROR) << "cannot reset GPU " << gpu.Describe().index()
                  << "'s locked clocks: " << reset;
    }
  }
  const v1::Device device = gpu.Describe();
  if (gpu.power_limit_w() != device.power_limit_default_w()) {
    absl::Status status = gpu.SetPowerLimit(device.power_limit_default_w(), now);
    if (!status.ok()) {
      // Kept in the journal: the next agent tries again.
      JLOG(ERROR) << "cannot restore GPU " << device.index() << "'s default cap: "
                  << status;
      SourceErrorLocked(device.source(), status);
      return;
    }
  }
  if (journal_ != nullptr) {
    absl::Status forgotten = journal_->Forget(GpuCapKey(gpu));
    if (!forgotten.ok()) JLOG(WARNING) << forgotten;
  }
}

int Agent::RestoreLeftoverCaps() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  int restored = 0;
  std::set<std::string> known;
  for (auto& gpu : gpus_) {
    const v1::Device device = gpu->Describe();
    known.insert(GpuCapKey(*gpu));
    known.insert(GpuClocksKey(*gpu));
    if (journal_ != nullptr && journal_->entries().count(GpuClocksKey(*gpu))) {
      JLOG(WARNING) << "GPU " << device.index() << " (" << device.uuid()
                    << ") had its clocks locked by a previous agent; resetting them";
      RestoreGpuCap(*gpu, now);
      ++restored;
      continue;
    }
    if (gpu->power_limit_w() == device.power_limit_default_w()) {
      if (journal_ != nullptr) (void)journal_->Forget(GpuCapKey(*gpu));
      continue;
    }
    JLOG(WARNING) << "GPU " << device.index() << " (" << device.uuid() << ") has a "
                  << gpu->power_limit_w() << " W power limit, not its default "
                  << device.power_limit_default_w()
                  << " W: a cap left behind (a crashed agent?); resetting it";
    RestoreGpuCap(*gpu, now);
    ++restored;
  }
  const int cpu_restored = RestoreCpuSettings();
  if (cpu_restored > 0) {
    JLOG(WARNING) << "restored " << cpu_restored
                  << " CPU power/frequency settings a previous agent left changed";
    restored += cpu_restored;
  }
  if (journal_ != nullptr) {
    std::vector<std::string> stale;
    for (const auto& [key, value] : journal_->entries()) {
      if (absl::StartsWith(key, "gpu/") && !known.count(key)) stale.push_back(key);
    }
    for (const std::string& key : stale) {
      JLOG(WARNING) << "journal entry " << key << " names a GPU that is not here; "
                                                  "forgetting it";
      (void)journal_->Forget(key);
    }
  }
  return restored;
}

std::string Agent::MakeTaskCgroup(const std::string& task_id) {
  if (options_.task_cgroup_root.empty()) return "";
  absl::StatusOr<TaskCgroup> cgroup = TaskCgroup::Create(options_.task_cgroup_root, task_id);
  absl::Status status = cgroup.status();
  if (status.ok() && access((cgroup->dir() + "/cgroup.procs").c_str(), F_OK) != 0) {
    status = absl::FailedPreconditionError(
        absl::StrCat(cgroup->dir(), " has no cgroup.procs: ", options_.task_cgroup_root,
                     " is not a cgroup v2 directory"));
    rmdir(cgroup->dir().c_str());
  }
  if (!status.ok()) {
    // The task runs without: its leftovers are found by its task id.
    SourceErrorLocked("cgroup", status);
    return "";
  }
  return cgroup->dir();
}

void Agent::KillLeftovers(const Task& task) {
  const std::string& id = task.spec.task_id();
  if (!task.cgroup_dir.empty()) {
    dead_cgroups_.push_back(task.cgroup_dir);
    absl::Status killed = TaskCgroup(task.cgroup_dir).Kill();
    if (killed.ok()) return;
    JLOG(WARNING) << "task " << id << ": cannot kill its cgroup (" << killed
                  << "); looking for its processes by " << kTaskMarkEnv;
  }
  absl::StatusOr<int> killed = reaper_.Kill(task.dir, SIGKILL);
  if (!killed.ok()) {
    JLOG(WARNING) << "task " << id << ": cannot look for processes it left: "
                  << killed.status();
  } else if (*killed > 0) {
    JLOG(INFO) << "task " << id << ": killed " << *killed << " processes it left running";
  }
}

void Agent::RemoveDeadCgroups() {
  std::vector<std::string> remaining;
  for (const std::string& dir : dead_cgroups_) {
    absl::Status removed = TaskCgroup(dir).Remove();
    // Killed processes leave the cgroup as they exit: try again later.
    if (absl::IsFailedPrecondition(removed)) {
      remaining.push_back(dir);
    } else if (!removed.ok()) {
      JLOG(WARNING) << "cannot remove " << dir << ": " << removed;
    }
  }
  dead_cgroups_ = std::move(remaining);
}

absl::StatusOr<double> Agent::TaskCpuSeconds(const Task& task) const {
  if (!task.cgroup_dir.empty()) {
    absl::StatusOr<double> seconds = TaskCgroup(task.cgroup_dir).CpuSeconds();
    if (seconds.ok()) return seconds;
    // Fall through: a cgroup without CPU accounting.
  }
  return task.process->CpuSeconds(options_.procfs_root);
}

void Agent::ReadProgress(Task& task) {
  // The file is in the task's directory: never follow a link the task put
  // there, never block on a FIFO.
  const int fd =
      open(task.progress_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return;  // The task reports nothing (yet).
  // Only what was appended since the last read, and at most 1 MiB of it.
  struct stat st;
  const int64_t appended =
      fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size - task.progress_offset : 0;
  if (appended <= 0) {
    close(fd);
    return;
  }
  const size_t before = task.progress_partial.size();
  task.progress_partial.resize(before + std::min(appended, kMaxProgressReadBytes));
  const ssize_t n = pread(fd, task.progress_partial.data() + before,
                          task.progress_partial.size() - before, task.progress_offset);
  close(fd);
  task.progress_partial.resize(before + std::max<ssize_t>(n, 0));
  if (n <= 0) return;
  task.progress_offset += n;
  absl::string_view unread = task.progress_partial;
  size_t end;
  while ((end = unread.find('\n')) != absl::string_view::npos) {
    const absl::string_view line = unread.substr(0, end);
    unread.remove_prefix(end + 1);
    // Anything that is not a contract event, and any malformed value, is
    // ignored: a task's output never breaks the agent.
    const std::optional<contract::ProgressEvent> parsed = contract::ParseProgressLine(line);
    if (!parsed.has_value()) continue;
    const contract::ProgressEvent& event = *parsed;
    using Type = contract::ProgressEvent::Type;
    switch (event.type) {
      case Type::kProgress:
        task.usage.set_waiting_for_shards(false);
        if (event.samples) task.usage.set_samples_done(*event.samples);
        if (event.steps) task.usage.set_steps_done(*event.steps);
        if (event.total) task.usage.set_samples_total(*event.total);
        if (event.batch) task.usage.set_latency_batch_size(*event.batch);
        if (event.latency_ms) task.usage.set_latency_ms(*event.latency_ms);
        if (event.quality) task.usage.set_quality(*event.quality);
        break;
      case Type::kShardDone:
        task.usage.set_waiting_for_shards(false);
        if (event.shard &&
            (task.spec.shard_count() == 0 || *event.shard < task.spec.shard_count()) &&
            task.shards_done.insert(*event.shard).second) {
          task.usage.set_shards_done(FormatRangeList(task.shards_done));
        }
        break;
      case Type::kTargetReached:
        task.usage.set_target_reached(true);
        if (event.quality) task.usage.set_quality(*event.quality);
        break;
      case Type::kWaiting:
        // Holds until the task reports work again.
        task.usage.set_waiting_for_shards(true);
        break;
    }
  }
  // What is left is the start of a line still being written. A task writing
  // an endless line does not grow the agent without bound.
  task.progress_partial.erase(0, task.progress_partial.size() - unread.size());
  if (task.progress_partial.size() > kMaxProgressReadBytes) task.progress_partial.clear();
}

void Agent::Account(absl::Time now, v1::NodeSample* sample,
                    const std::map<std::string, double>& exited_cpu_seconds) {
  const double dt = std::max(0.0, absl::ToDoubleSeconds(now - last_account_));
  last_account_ = now;

  // 1. GPUs: energy since the last step, by owner.
  std::map<int32_t, std::string> owner;
  for (const auto& [id, task] : tasks_) {
    for (int32_t index : task.spec.gpu_indices()) owner[index] = id;
  }
  std::map<std::string, double> gpu_j;
  double static_pool_j = options_.static_power_w * dt;
  for (auto& gpu : gpus_) {
    absl::StatusOr<v1::DeviceSample> sampled = gpu->Sample(now);
    if (!sampled.ok()) {
      // The energy since the last good reading is counted when the device
      // reads again (its counter is cumulative).
      ReadErrorLocked(gpu->Describe().source(), sampled.status());
      continue;
    }
    SourceOkLocked(sampled->source());
    const v1::DeviceSample& reading = *sampled;
    const int32_t index = reading.index();
    if (!last_gpu_energy_j_.count(index)) last_gpu_energy_j_[index] = reading.energy_j();
    const double delta = std::max(0.0, reading.energy_j() - last_gpu_energy_j_[index]);
    last_gpu_energy_j_[index] = reading.energy_j();
    auto it = owner.find(index);
    auto holder = gpu_holders_.find(index);
    if (it != owner.end()) {
      gpu_j[it->second] += delta;
    } else if (holder == gpu_holders_.end()) {
      static_pool_j += delta;
    }  // Else a pod's GPU: its energy is the pod's, not the tasks'.
    if (sample != nullptr) {
      v1::DeviceSample* device = sample->add_devices();
      *device = reading;
      if (holder != gpu_holders_.end()) *device->mutable_held_by() = holder->second;
    }
  }

  // 2. CPU (and DRAM): the idle part into the pool, the rest by CPU-time
  // share; what no task used (the OS, the agent) also into the pool, so the
  // tasks' energy adds up to the node's.
  double cpu_dynamic_j = 0, busy_seconds = 0;
  if (cpu_ != nullptr) {
    absl::StatusOr<CpuReading> reading = cpu_->Sample(now);
    if (reading.ok()) {
      last_cpu_samples_ = reading->samples;
      busy_seconds = reading->busy_seconds;
      const double idle_j = std::min(reading->energy_j, cpu_->idle_power_w() * dt);
      static_pool_j += idle_j;
      cpu_dynamic_j = reading->energy_j - idle_j;
      if (reading->errors.empty()) {
        SourceOkLocked(cpu_->name());
      } else {
        for (const absl::Status& error : reading->errors) {
          ReadErrorLocked(cpu_->name(), error);
        }
      }
    } else {
      ReadErrorLocked(cpu_->name(), reading.status());
    }
    if (sample != nullptr) {
      for (const v1::DeviceSample& device : last_cpu_samples_) *sample->add_devices() = device;
    }
  }
  std::map<std::string, double> cpu_share;
  double share_sum = 0;
  for (auto& [id, task] : tasks_) {
    // An exited task's group is gone from /proc; wait4 told its total.
    auto exited = exited_cpu_seconds.find(id);
    absl::StatusOr<double> cpu =
        exited != exited_cpu_seconds.end() && task.cgroup_dir.empty()
            ? absl::StatusOr<double>(exited->second)
            : TaskCpuSeconds(task);
    if (!cpu.ok()) continue;
    const double used = std::max(0.0, *cpu - task.last_cpu_seconds);
    task.last_cpu_seconds = std::max(task.last_cpu_seconds, *cpu);
    if (busy_seconds > 0) {
      cpu_share[id] = used / busy_seconds;
      share_sum += cpu_share[id];
    }
  }
  // Clock-tick rounding can make the shares add up to a bit more than 1.
  if (share_sum > 1) {
    for (auto& [id, share] : cpu_share) share /= share_sum;
    share_sum = 1;
  }
  if (!tasks_.empty()) static_pool_j += cpu_dynamic_j * (1 - share_sum);

  // 3. The static pool, evenly.
  const double static_each = tasks_.empty() ? 0 : static_pool_j / tasks_.size();
  for (auto& [id, task] : tasks_) {
    AddEnergy(task.usage.mutable_energy(), gpu_j[id], cpu_dynamic_j * cpu_share[id],
              static_each);
    if (observer_ != nullptr) observer_->OnTaskEnergy(task.spec, task.usage.energy());
  }
}

void Agent::Finish(const std::string& task_id, const ExitStatus& exit,
                   absl::Time now) {
  auto it = tasks_.find(task_id);
  Task& task = it->second;
  ReadProgress(task);
  // Nothing of the task may outlive it.
  task.process->KillGroup();
  KillLeftovers(task);
  workspace_.RemoveHints(task_id);
  ReleaseGpus(task.spec, now);
  v1::TaskEvent event;
  event.set_task_id(task_id);
  event.set_job_id(task.spec.job_id());
  event.set_kind(v1::TaskEvent::KIND_EXITED);
  *event.mutable_time() = ToProtoTime(now);
  event.set_pid(task.process->pid());
  event.set_exit_code(exit.exit_code);
  event.set_signal(exit.signal);
  event.set_stopped(task.process->stop_requested());
  *event.mutable_usage() = task.usage;
  JLOG(INFO) << "task " << task_id << " exited with code " << exit.exit_code
             << " after " << task.usage.energy().total_j() << " J";
  // The Account just before Finish reported the task's final energy.
  if (observer_ != nullptr) observer_->OnTaskEnded(task_id);
  tasks_.erase(it);
  // CPU caps are node-wide: they go back when no task needs them.
  if (tasks_.empty()) RestoreCpuSettings();
  Emit(event);
}

void Agent::Tick() {
  absl::MutexLock lock(&mu_);
  if (!dead_cgroups_.empty()) RemoveDeadCgroups();
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, ExitStatus>> exited;
  for (auto& [id, task] : tasks_) {
    ReadProgress(task);
    task.process->Tick(now);
    if (std::optional<ExitStatus> exit = task.process->Poll()) {
      exited.emplace_back(id, *exit);
    }
  }
  if (exited.empty()) return;
  // Close the books up to now while the exited tasks still count.
  std::map<std::string, double> exited_cpu_seconds;
  for (const auto& [id, exit] : exited) exited_cpu_seconds[id] = exit.cpu_seconds;
  Account(now, nullptr, exited_cpu_seconds);
  for (const auto& [id, exit] : exited) Finish(id, exit, now);
}

void Agent::SendHeartbeat() {
  absl::MutexLock lock(&mu_);
  if (sink_ == nullptr) return;
  v1::AgentMessage message;
  *message.mutable_heartbeat()->mutable_time() = ToProtoTime(clock_->Now());
  sink_->Send(message);
}

void Agent::SendTelemetry() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(now);
  Account(now, sample);
  double power = options_.static_power_w;
  for (const v1::DeviceSample& device : sample->devices()) power += device.power_w();
  sample->set_node_power_w(power);
  for (auto& [id, task] : tasks_) {
    ReadProgress(task);
    *sample->add_tasks() = task.usage;
  }
  for (const auto& [name, status] : sources_) *sample->add_sources() = status;
  if (observer_ != nullptr) observer_->OnSample(*sample);
  if (sink_ != nullptr) sink_->Send(message);
}

int Agent::KillLeftoverTasks() {
  absl::MutexLock lock(&mu_);
  std::set<std::string> ids;
  for (const std::string& id : workspace_.TaskIds()) {
    if (SafeTaskId(id) && !tasks_.count(id)) ids.insert(id);
  }
  std::map<std::string, int> killed;
  if (!options_.task_cgroup_root.empty()) {
    for (const std::string& id : ids) {
      TaskCgroup cgroup(absl::StrCat(options_.task_cgroup_root, "/", id));
      absl::StatusOr<std::vector<pid_t>> pids = cgroup.Pids();
      if (!pids.ok()) continue;  // No cgroup left for this task.
      dead_cgroups_.push_back(cgroup.dir());
      if (pids->empty()) continue;
      absl::Status status = cgroup.Kill();
      if (status.ok()) {
        killed[id] += static_cast<int>(pids->size());
      } else {
        JLOG(WARNING) << "cannot kill the cgroup of task " << id << ": " << status;
      }
    }
  }
  // Without a cgroup (or where killing it failed): by the task's mark in
  // the processes' environment.
  std::map<std::string, std::string> id_of_mark;
  std::set<std::string> marks;
  for (const std::string& id : ids) {
    id_of_mark[workspace_.TaskDir(id)] = id;
    marks.insert(workspace_.TaskDir(id));
  }
  absl::StatusOr<std::map<std::string, int>> scanned = reaper_.KillAll(marks, SIGKILL);
  if (!scanned.ok()) {
    JLOG(WARNING) << "cannot look for tasks a previous agent left: " << scanned.status();
  } else {
    for (const auto& [mark, count] : *scanned) killed[id_of_mark[mark]] += count;
  }
  for (const auto& [id, count] : killed) {
    JLOG(WARNING) << "killed task " << id << " (" << count
                  << " processes) left running by a previous agent; the scheduler "
                     "runs it again as a new attempt";
  }
  workspace_.RemoveAllHints();
  return static_cast<int>(killed.size());
}

int Agent::RecoverFromLostJournal(const CapJournal::Reset& reset) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  const std::string what = absl::StrCat(
      "caps journal unreadable (", reset.error, ")",
      reset.kept_as.empty() ? "" : absl::StrCat("; kept as ", reset.kept_as),
      "; every device reset to its default and a new journal started");
  JLOG(ERROR) << what << ". The original power limits and clocks it held are lost.";
  int count = 0;
  for (auto& gpu : gpus_) {
    const v1::Device device = gpu->Describe();
    absl::Status clocks = gpu->ResetClocks();
    if (!clocks.ok() && !absl::IsUnimplemented(clocks)) {
      JLOG(ERROR) << "cannot reset GPU " << device.index() << "'s clocks: " << clocks;
      SourceErrorLocked(device.source(), clocks);
    }
    if (gpu->power_limit_w() != device.power_limit_default_w()) {
      absl::Status set = gpu->SetPowerLimit(device.power_limit_default_w(), now);
      if (!set.ok()) {
        JLOG(ERROR) << "cannot give GPU " << device.index() << " its default power limit: "
                    << set;
        SourceErrorLocked(device.source(), set);
        continue;
      }
      JLOG(WARNING) << "GPU " << device.index() << " (" << device.uuid()
                    << ") reset to its default power limit "
                    << device.power_limit_default_w() << " W";
    }
    ++count;
  }
  for (const auto& [key, setting] : cpu_settings_) {
    if (!setting.hardware_default) {
      JLOG(WARNING) << key << " has no hardware default to go back to; left as it is";
      continue;
    }
    absl::StatusOr<double> value = setting.hardware_default();
    absl::Status written = value.ok() ? setting.write(*value) : value.status();
    if (!written.ok()) {
      JLOG(ERROR) << "cannot reset " << key << " to its default: " << written;
      continue;
    }
    ++count;
  }
  SourceErrorLocked("caps-journal", absl::DataLossError(what));
  return count;
}

void Agent::StopAllTasks(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, task] : tasks_) task.process->Terminate(clock_->Now(), grace);
}

void Agent::RestoreDefaultCaps() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  for (auto& gpu : gpus_) RestoreGpuCap(*gpu, now);
  RestoreCpuSettings();
}

}  // namespace joule
