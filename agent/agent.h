#ifndef JOULE_AGENT_AGENT_H_
#define JOULE_AGENT_AGENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/cap_journal.h"
#include "agent/devices.h"
#include "agent/process/task_process.h"
#include "agent/process/task_reaper.h"
#include "agent/task_users.h"
#include "agent/task_workspace.h"
#include "common/clock.h"
#include "joule/v1/agent.pb.h"

namespace joule {

// Where the agent's messages go: the scheduler link. Send must not block
// and may drop messages while disconnected; everything that must not be
// lost is repeated in the next Register.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void Send(const v1::AgentMessage& message) = 0;
};

// What the agent sees as it runs, for its metrics (agent/metrics.h). The
// agent calls these with its lock held: an implementation must be quick,
// thread-safe, and must not call back into the agent.
class AgentObserver {
 public:
  virtual ~AgentObserver() = default;
  // The node's devices (GPUs, CPU packages, DRAM domains), once, when the
  // agent is constructed.
  virtual void OnDevices(const std::vector<v1::Device>& devices) = 0;
  // Every telemetry sample as it is sent: the devices read this time, the
  // running tasks' usage, and every source's state.
  virtual void OnSample(const v1::NodeSample& sample) = 0;
  // A read of `source` (a device, a counter, a sysfs file) failed.
  virtual void OnReadError(const std::string& source) = 0;
  // A running task's energy so far (cumulative), after each accounting step.
  virtual void OnTaskEnergy(const v1::StartTask& task, const v1::Energy& energy) = 0;
  // The task has ended; its final energy was reported just before.
  virtual void OnTaskEnded(const std::string& task_id) = 0;
};

struct AgentOptions {
  std::string node_name;
  // The agent's state and the tasks' directories; layout and permissions in
  // agent/task_workspace.h.
  std::string work_dir;
  std::string procfs_root = "/proc";
  std::map<std::string, std::string> labels;
  double cpus = 1;
  int64_t memory_bytes = 0;
  // Power of the node outside the reported devices (fans, memory, board).
  double static_power_w = 0;
  // The agent's own environment entries passed on to tasks (PATH, HOME...).
  std::vector<std::pair<std::string, std::string>> base_env;
  // A cgroup v2 directory the agent may create children in (delegated to
  // it, e.g. /sys/fs/cgroup/joule). When set, each task runs in
  // <root>/<task id>, is stopped with cgroup.kill, and its CPU time is that
  // cgroup's cpu.stat usage_usec; otherwise its leftovers are found by
  // their JOULE_TASK_ID and its CPU time is its process group's.
  std::string task_cgroup_root;
  // Who tasks run as (StartTask.user; see agent/task_users.h): only the
  // users of this map (--task-users), or with nullopt the system user
  // database.
  std::optional<TaskUserMap> task_users;
  // Users below this uid are refused; 0 disables the floor
  // (--min-task-uid).
  int64_t min_task_uid = 1000;
  // Whether tasks may run as uid 0 (--allow-root-tasks).
  bool allow_root_tasks = false;
  // Rendezvous (agent/rendezvous.h): the address other nodes reach this
  // node's tasks at (--address), and the ports gangs whose replica 0 runs
  // here may hold, [task_port_min, task_port_max] (--task-ports; 0, 0:
  // none).
  std::string address = "127.0.0.1";
  int32_t task_port_min = 0;
  int32_t task_port_max = 0;
};

// The node agent's core: runs tasks as child processes, samples devices,
// attributes energy to tasks, and applies the scheduler's commands. It
// knows nothing of gRPC: commands come in through HandleCommand and
// messages leave through a MessageSink.
//
// Energy attribution at every accounting step (each telemetry sample and
// each task exit), over the interval since the previous step:
//  1. A task gets the measured energy of the GPUs it owns.
//  2. The CPU's dynamic energy (above its idle power) is split by each
//     task's share of the host's busy CPU time (its process group).
//  3. The static pool (node static power, CPU idle power, energy of GPUs no
//     task owns) is split evenly among the running tasks. A GPU a
//     Kubernetes pod holds (SetGpuHolders) is not in the pool: its energy
//     is the pod's, and telemetry marks it DeviceSample.held_by.
//
// Tasks run as their owner, isolated:
//  1. StartTask.user maps to a uid, gid and groups (TaskUsers); root, low
//     uids and unknown users fail the start. An agent that is root starts
//     the task with that identity; every task gets no_new_privs.
//  2. The task's directory is its user's alone, its hints file is the
//     agent's and readable by the task only, and the agent's own files
//     cannot be written by tasks (TaskWorkspace has the layout).
//  3. Nothing of a task outlives it: when its main process has exited (by
//     itself, or killed after a stop's grace period) the agent kills its
//     process group, then everything else of it: with cgroup.kill where the
//     task has a cgroup, else every process whose environment carries its
//     JOULE_TASK_ID (TaskReaper).
//
// Thread-safe; state guarded by mu_.
class Agent {
 public:
  // `journal` (may be null) records every hardware setting changed, so a
  // successor can undo them after a crash. `observer` (may be null; must
  // outlive the agent) is told what the agent measures.
  Agent(AgentOptions options, std::vector<std::unique_ptr<GpuDevice>> gpus,
        std::unique_ptr<CpuSource> cpu, const Clock* clock,
        CapJournal* journal = nullptr, AgentObserver* observer = nullptr);

  // At start: gives every GPU whose power limit is not its default (a cap
  // a crashed agent left behind) its default back, with a warning, and
  // drops journal entries of GPUs that are gone. Returns how many were reset.
  int RestoreLeftoverCaps();

  // At start, when the caps journal could not be parsed (CapJournal::
  // OpenOrReset): the originals it held are lost, so every device found
  // goes back to its hardware default (GPUs: default power limit and
  // clocks; cpufreq policies: their maximum). Logs an error naming the
  // journal and where it was kept, and marks the "caps-journal" source
  // DEGRADED (visible in Register, telemetry and the source metric).
  // Returns how many settings were reset.
  int RecoverFromLostJournal(const CapJournal::Reset& reset);

  void SetSink(MessageSink* sink);
  // The GPUs Kubernetes containers hold outside Joule (from the kubelet's
  // PodResources API; agent/kubelet/pod_gpu_watcher.h), by GPU index,
  // replacing the previous set. From the next accounting step their energy
  // leaves the static pool and telemetry marks them held_by, so that the
  // scheduler places nothing there. Quick; call it with no kubelet call in
  // flight.
  void SetGpuHolders(std::map<int32_t, v1::KubernetesContainer> holders);
  // The CPU settings SetCap may change (RAPL package limits, cpufreq
  // maxima), by key; see CpuSetting. Call before the agent starts.
  void SetCpuSettings(std::map<std::string, CpuSetting> settings);

  // The registration message: node, tasks still running, final events the
  // scheduler has not acknowledged.
  v1::Register MakeRegister();
  void HandleCommand(const v1::SchedulerCommand& command);
  // Reaps exited tasks, reads progress, escalates stops. Call often.
  void Tick();
  // Samples every device, attributes energy, and sends telemetry.
  void SendTelemetry();
  void SendHeartbeat();
  // Shutdown, in three steps: StopAllTasks sends every task SIGTERM (and
  // arms SIGKILL after `grace`); the caller keeps calling Tick() until
  // running_tasks() is 0, which reaps them and reports their exits; then
  // RestoreDefaultCaps gives every GPU its default power limit back.
  void StopAllTasks(absl::Duration grace);
  void RestoreDefaultCaps();

  int running_tasks() const;

  // Records a source's state: found and working, degraded by `error`, or
  // absent. A degraded source is logged once per change of message and
  // counted; it recovers to OK on its next good read.
  void SourceOk(const std::string& name);
  void SourceError(const std::string& name, const absl::Status& error);
  void SourceAbsent(const std::string& name, const std::string& why);
  std::vector<v1::SourceStatus> Sources() const;

  // Kills the tasks a previous agent on this node left running (it died
  // without stopping them): every task with a directory in the work
  // directory that is not running here, through its cgroup where it has
  // one and by its JOULE_TASK_ID otherwise. This agent cannot watch or
  // adopt them (they are not its children), and the scheduler marks them
  // lost and runs them again, so killing them is what keeps a task from
  // running twice. Also drops stale hints files. Call before connecting.
  // Returns how many tasks had processes left.
  int KillLeftoverTasks();

 private:
  struct Task {
    v1::StartTask spec;
    TaskIdentity identity;
    std::unique_ptr<TaskProcess> process;
    absl::Time start_time;
    std::string dir;
    std::string progress_path;
    std::string hints_path;
    int64_t progress_offset = 0;
    std::string progress_partial;
    double last_cpu_seconds = 0;
    // The task's own cgroup, when the agent made one.
    std::string cgroup_dir;
    std::set<int> shards_done;
    v1::TaskUsage usage;
    // Current hints.
    int32_t batch_size = 0;
    std::string shards;
    bool stop_hint = false;
  };

  void StartTask(const v1::StartTask& start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopTask(const v1::StopTask& stop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetCap(const v1::SetCap& set_cap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetCpuCap(const v1::SetCap& set_cap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ChangeCpuSetting(const std::string& key, double value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts back every CPU setting the journal holds an original for.
  int RestoreCpuSettings() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateHints(const v1::UpdateHints& hints) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FetchLogs(const v1::FetchLogs& fetch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // `exited_cpu_seconds`: final CPU seconds of tasks that just exited.
  void Account(absl::Time now, v1::NodeSample* sample,
               const std::map<std::string, double>& exited_cpu_seconds = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadProgress(Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CPU seconds of the task: its cgroup's where it has one, else its
  // process group's.
  absl::StatusOr<double> TaskCpuSeconds(const Task& task) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A cgroup for the task about to start, when a root is configured; "" if
  // none (the source is degraded and the task runs without).
  std::string MakeTaskCgroup(const std::string& task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kills whatever of the task is left after its main process is gone.
  void KillLeftovers(const Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the cgroups of ended tasks once their processes are gone.
  void RemoveDeadCgroups() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteHints(const Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the task's GPUs idle and gives them their default power limit.
  void ReleaseGpus(const v1::StartTask& spec, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(const std::string& task_id, const ExitStatus& exit,
              absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const v1::TaskEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SourceErrorLocked(const std::string& name, const absl::Status& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A failed read (not a failed actuation): degrades the source and tells
  // the observer.
  void ReadErrorLocked(const std::string& name, const absl::Status& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SourceOkLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  GpuDevice* Gpu(int32_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every cap change goes through these: journal, change, restore, forget.
  std::string GpuCapKey(const GpuDevice& gpu) const;
  absl::Status ChangeGpuCap(GpuDevice& gpu, double watts, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RestoreGpuCap(GpuDevice& gpu, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string GpuClocksKey(const GpuDevice& gpu) const;
  absl::Status LockGpuClocks(GpuDevice& gpu, int32_t min_mhz, int32_t max_mhz)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string TaskDir(const std::string& task_id) const;

  const AgentOptions options_;
  const TaskUsers users_;
  const TaskWorkspace workspace_;
  const TaskReaper reaper_;
  const Clock* const clock_;
  CapJournal* const journal_;
  AgentObserver* const observer_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<GpuDevice>> gpus_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<CpuSource> cpu_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CpuSetting> cpu_settings_ ABSL_GUARDED_BY(mu_);
  MessageSink* sink_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, Task> tasks_ ABSL_GUARDED_BY(mu_);
  // Final events kept until the scheduler acknowledges them.
  std::map<std::string, v1::TaskEvent> unacked_ ABSL_GUARDED_BY(mu_);
  // Every task id this agent has started: a repeated start is a no-op.
  std::set<std::string> started_ ABSL_GUARDED_BY(mu_);
  // Accounting state.
  absl::Time last_account_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, double> last_gpu_energy_j_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::DeviceSample> last_cpu_samples_ ABSL_GUARDED_BY(mu_);
  // GPUs Kubernetes containers hold, by index (SetGpuHolders).
  std::map<int32_t, v1::KubernetesContainer> gpu_holders_ ABSL_GUARDED_BY(mu_);
  // State of every telemetry/actuator source, by name.
  std::map<std::string, v1::SourceStatus> sources_ ABSL_GUARDED_BY(mu_);
  // Cgroups of ended tasks, killed, to be removed once empty.
  std::vector<std::string> dead_cgroups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_AGENT_AGENT_H_
