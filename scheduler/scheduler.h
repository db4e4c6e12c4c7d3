#ifndef JOULE_SCHEDULER_SCHEDULER_H_
#define JOULE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/bandit/batch_size_bandit.h"
#include "scheduler/bandit/batch_sizer.h"
#include "scheduler/brain/early_stop.h"
#include "scheduler/brain/energy_budget.h"
#include "scheduler/energy_model.h"
#include "scheduler/job_queue.h"
#include "scheduler/job_store.h"
#include "scheduler/log_requests.h"
#include "scheduler/node_registry.h"
#include "scheduler/placement_explanations.h"
#include "scheduler/power/node_power_manager.h"
#include "scheduler/carbon.h"
#include "scheduler/placement/pipeline.h"
#include "scheduler/placement/profile.h"
#include "scheduler/profiling/cap_choice.h"
#include "scheduler/profiling/cap_profiler.h"
#include "scheduler/sharding/sharder.h"
#include "scheduler/store/group_commit_writer.h"
#include "scheduler/store/store.h"
#include "scheduler/task_lifecycle.h"
#include "scheduler/telemetry_guard.h"

namespace joule {

// Events the metrics exporter (scheduler/metrics.h) counts as they happen.
// Called with the scheduler's lock held: implementations must be quick and
// thread-safe, and must not call into the Scheduler.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // One placement cycle (a pass of the pipeline over the queue) took
  // `duration` on the scheduler's clock.
  virtual void OnPlacementCycle(absl::Duration duration) = 0;
  // A job was placed for the first time, `queue_wait` after its submission.
  virtual void OnFirstPlacement(absl::Duration queue_wait) = 0;
  // A SetCap went to an agent; `reason` is one of "profiling", "objective",
  // "thermal", "budget" (the energy brain) and "operator" (SetNodeCap).
  virtual void OnCapSent(absl::string_view reason) = 0;
  // Telemetry from `node` was dropped as impossible; `reason` is a
  // TelemetryRejectionLabel ("not_finite", "power_above_max", ...).
  virtual void OnTelemetryRejected(absl::string_view node, absl::string_view reason) {}
};

// What the metrics exporter reads of a node.
struct NodeMetrics {
  std::string name;
  // READY: registered, stream open, heard from within the heartbeat timeout.
  bool ready = false;
  // Suspended (or suspending, resuming) by idle power management.
  bool suspended = false;
  // The last telemetry sample's node power (0 before the first).
  double power_w = 0;
  // Since the last telemetry arrived (or, before the first, since the node
  // registered).
  absl::Duration telemetry_age;
};

// What the metrics exporter reads of a job.
struct JobMetrics {
  std::string id;
  std::string user;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  // Every attempt's measured energy (only grows).
  v1::Energy energy;
  // Only grow.
  double co2e_g = 0;
  double cost = 0;
  // spec.energy_budget_j (0: no budget).
  double budget_j = 0;
  // The estimated saving of a finished job, where it has one.
  bool has_savings = false;
  double saved_j = 0;
};

// A copy of what the metrics exporter shows, taken under the scheduler's
// lock (Scheduler::Metrics).
struct MetricsSnapshot {
  absl::Time now;
  // Every job the scheduler holds, by state.
  std::map<v1::JobState, int> jobs_by_state;
  // Pending jobs (in the queue or waiting out a retry backoff).
  int queue_length = 0;
  std::vector<NodeMetrics> nodes;
  // Jobs that have run and are not finished, and finished jobs that ended
  // within the retention asked for; by id.
  std::vector<JobMetrics> jobs;
  // Sums since this Scheduler was created; they only grow. saved_j counts
  // positive savings only (a job that cost more than its estimate shows
  // that in its own JobMetrics::saved_j).
  double energy_j = 0;
  double saved_j = 0;
  double co2e_g = 0;
  double cost = 0;
  // The carbon config's currency; empty when not configured.
  std::string currency;
  // Jobs whose latest state the store has not taken yet.
  int unstored_jobs = 0;
};

struct SchedulerOptions {
  // Just-in-time power-cap profiling of job classes not yet profiled on a
  // GPU model (min/max caps come from the device); off: default caps.
  bool profile_caps = true;
  ProfilerOptions profiler;
  // The cap choice counts the node static power a task holds while it runs
  // (its share of the node's GPUs; ChooseCap's static_w), so the default
  // objective minimizes the job's whole energy; off: the devices' power only.
  bool caps_count_static_power = true;
  // Choose training batch sizes within the spec's range by Thompson sampling
  // across recurrences of a job class; off: the spec's default.
  bool learn_batch_size = true;
  // The batch-size bandits' tunables. Pruning as Zeus does: an arm measured
  // at more than twice the best arm's cost is not tried again (one run of a
  // batch size that costs 2x already shows it cannot win; Zeus stops runs
  // past 2x the best cost for the same reason).
  BatchSizeBanditOptions batch_bandit = {/*prune_factor=*/2, /*prune_min_observations=*/1};
  // A running training job whose projected cost exceeds this many times its
  // class's best measured cost is moved to the best batch size (Zeus's
  // early stopping at beta = 2, applied as a correction instead of a stop),
  // once it has done batch_correction_min_progress of its work (a reliable
  // projection). 0: never.
  double batch_correction_factor = 2;
  double batch_correction_min_progress = 0.02;
  // Idle power management (NodePowerManager): with node_power.suspend_after
  // set and a power_control to run the commands, idle nodes are suspended
  // and resumed when work needs them. Off by default.
  NodePowerOptions node_power;
  NodePowerControl* power_control = nullptr;
  // Energy routing, part of energy-aware placement: a job waits for
  // the GPU models that do its class's work for at most route_tolerance x
  // the fewest joules per sample (learned from profiles), for up to
  // route_wait_fraction x its predicted run time there (its expected_samples
  // over the profiled throughput), at most route_max_wait, or
  // route_unsized_wait when it declares no size; after that, any model.
  // A job small enough to explore (BatchSizer::MayExplore) is sent first to
  // the models its class has not been profiled on, so that every model gets
  // a profile. route_wait_fraction 0 turns routing off.
  double route_tolerance = 1.10;
  double route_wait_fraction = 0.1;
  absl::Duration route_max_wait = absl::Hours(4);
  absl::Duration route_unsized_wait = absl::Minutes(10);
  // Placement scores nodes by learned energy efficiency, consolidation,
  // thermal headroom and GPU fit; off: the first feasible node in name order
  // (energy-oblivious first fit, for the simulator's baselines).
  bool energy_aware_placement = true;
  // A pending job that fits the cluster once its running tasks end, but has
  // found no room for this long (a large gang behind a stream of small
  // jobs that keep taking what frees up), holds the queue: no job submitted
  // after it is placed until it is. Zero or infinite: off.
  absl::Duration starvation_guard = absl::Hours(1);
  // The placement profiles (--placement-config): their filters, weighted
  // scorers and sampling, and the default one, which places jobs whose spec
  // names none. Unset: the built-in "energy" and "first-fit" profiles, with
  // "energy" the default, or "first-fit" without energy_aware_placement.
  // Validated by Create.
  std::optional<PlacementConfig> placement_config;
  // Seeds the scheduler's random choices (the simulator fixes it).
  uint64_t random_seed = 1;
  // A GPU within this many degrees of its throttle temperature gets its cap
  // lowered by thermal_step_w per telemetry sample (down to its minimum) and
  // takes no new work.
  double thermal_margin_c = 5;
  double thermal_step_w = 25;
  // Device models: throttle temperatures and priors. The built-in catalog
  // unless overridden (--gpu-catalog).
  std::vector<GpuModelSpec> gpu_catalog = GpuCatalog();
  // A node silent for longer is marked down and its tasks lost.
  absl::Duration heartbeat_timeout = absl::Seconds(10);
  // Nodes whose last telemetry is older are not placed on.
  absl::Duration telemetry_freshness = absl::Seconds(30);
  // SIGTERM-to-SIGKILL grace period for stopped tasks.
  absl::Duration stop_grace = absl::Seconds(10);
  // How long GetTaskLogs waits for agents.
  absl::Duration logs_timeout = absl::Seconds(5);
  // Carbon intensity and electricity price per region (--carbon-config);
  // not configured by default (0 gCO2e and 0 cost per kWh).
  CarbonConfig carbon;
  // Told of placement cycles, first placements and caps sent; may be null.
  // Must outlive the scheduler.
  SchedulerObserver* observer = nullptr;
  // How state reaches the store (GroupCommitWriter). By default a writer
  // thread takes the writes queued under the scheduler's lock and commits
  // them together outside it: one fsync (one etcd transaction) for all the
  // writes queued meanwhile, and none while the lock is held. etcd needs
  // the batch limits set to its own (scheduler/main.cc does).
  // inline_commits writes each change on the calling thread before the
  // call returns, under the lock: deterministic, for the simulator (which
  // runs the core on a virtual clock and must not depend on a thread's
  // timing) and for unit tests that check every effect of a call when it
  // returns.
  GroupCommitWriterOptions store_writes;
};

// The scheduler core: the coordinator of the parts that hold cluster state
// and make decisions. It knows nothing of gRPC: services translate requests
// into these calls, and agents are reached through AgentLink.
//
// The parts, each in its own header:
//   NodeRegistry       nodes, their streams, heartbeats, telemetry and the
//                      resources tasks hold (node_registry.h);
//   JobStore           persistence: group-committed writes and the jobs the
//                      store does not have yet (job_store.h);
//   JobQueue           pending jobs per shape, backoff (job_queue.h);
//   PlacementPipeline  filters and scorers over a cycle's ClusterSnapshot
//                      (placement/pipeline.h);
//   task_lifecycle.h   the rules of task endings, attempts and retries;
//   the energy brain   caps, batch sizes, shards, budgets, early stop
//                      (energy_brain.cc, on EnergyModel, CapProfiler,
//                      BatchSizer, Sharder, EnergyBudgetGuard,
//                      EarlyStopWatch).
// The Scheduler owns them, holds the one lock they all run under, and
// turns their verdicts into job changes, commands to agents and stores.
//
// Job life cycle:
//  1. SubmitJob validates, stores durably (fsync) and queues the job; a
//     failed write refuses the job. The answer comes from the write's
//     completion (SubmitJobAsync), so concurrent submissions share one
//     commit and no thread waits for it.
//  2. Tick() places pending jobs in submission order through the placement
//     pipeline (a gang is placed whole), queues the tasks' write as
//     STARTING, and sends StartTask to the agents from that write's
//     completion -- only once it succeeded, and only if the job still wants
//     the tasks (not cancelled, no sibling lost meanwhile; otherwise they
//     end unstarted). A failed write undoes the placement in memory (tasks,
//     resources, shard split, attempt count) and the job waits for a later
//     cycle.
//  3. Task events from agents move tasks to RUNNING and then to a final
//     state; the job follows: all succeeded, cancelled, or an attempt that
//     ended in a lost or failed task. The job's restart policy decides the
//     last: retry (back to PENDING, not placed before now + backoff_s x
//     2^retries used, capped at max_backoff_s) or FAILED once the endings it
//     retries are exhausted. A lost replica of a sharded inference job does
//     not end the attempt: its shards move to the replicas still running.
//     Shards finished by any attempt stay finished; a new attempt gets the
//     others.
//  4. Tick() also marks nodes silent beyond the heartbeat timeout down; their
//     tasks are lost.
// Every other state change is queued for the store as it happens; a write
// that fails leaves the job marked unstored, and each Tick() writes its
// latest state again until the store takes it (one log line per failure
// streak); while the store refuses writes, nothing is placed.
// On restart the store gives back every job; running tasks are adopted when
// their agent reconnects and reports them, and never started twice: a task
// the agent does not report is lost and its job retried as a new attempt.
//
// Thread-safe; all state, the parts' included, guarded by mu_. Time comes
// only from the clock. Store writes are queued under mu_ to store_ and done
// by its writer thread (never under mu_, unless
// options.store_writes.inline_commits); their completions take mu_ on that
// thread. Lock order: mu_, then the writer's own lock; nothing waits for
// the writer while holding mu_.
class Scheduler {
 public:
  using JobWatcher = std::function<void(const v1::Job&)>;
  using LogsCallback =
      std::function<void(absl::StatusOr<v1::GetTaskLogsResponse>)>;

  // Loads every job, power profile and batch-size bandit from
  // `initial_state` when given, else from `store`; every write goes to
  // `store`. A hot standby that has been watching the store hands over its
  // up-to-date copy as `initial_state` and so takes over without reading
  // the whole store again. `initial_state` is only read during Create and
  // need not outlive it; `store` and `clock` must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(
      Store* store, const Clock* clock, SchedulerOptions options,
      const Store* initial_state = nullptr);

  // Writes whatever is still queued for the store and runs its completions
  // (a placement's StartTasks among them) first.
  ~Scheduler();

  // Client API.
  // Validates the spec, stores the job durably and queues it; a failed
  // write refuses it. With a `request_id` already seen, answers with the
  // job it created (the same spec) or ALREADY_EXISTS (another spec); a
  // retried submit never makes a second job.
  // `done` runs once: at once on the calling thread for an invalid spec;
  // otherwise with the scheduler's lock held, from the store write's
  // completion (the writer's thread; with inline commits, within the
  // call), so it must only hand the answer on, as gRPC's Finish does.
  using SubmitCallback = std::function<void(absl::StatusOr<v1::Job>)>;
  void SubmitJobAsync(v1::JobSpec spec, const std::string& request_id, SubmitCallback done);
  // SubmitJobAsync, waiting for the answer.
  absl::StatusOr<v1::Job> SubmitJob(v1::JobSpec spec,
                                    const std::string& request_id = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const;
  std::vector<v1::Job> ListJobs(const std::set<v1::JobState>& states) const;
  // Answers once the store has the cancel (or refused it: then it is
  // written again at each tick).
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id,
                                    const std::string& reason);
  std::vector<v1::Node> ListNodes() const;
  absl::StatusOr<v1::Node> GetNode(const std::string& name) const;
  // Calls `watcher` with the job now and at each of its state changes, with
  // the scheduler's lock held (so it must only queue). Returns a handle.
  absl::StatusOr<int64_t> WatchJob(const std::string& job_id,
                                   JobWatcher watcher);
  void Unwatch(int64_t handle);
  // Asks the agents for task output; `done` runs once, from another call
  // into the scheduler (a reply, or Tick() at the timeout).
  void GetTaskLogs(const v1::GetTaskLogsRequest& request, LogsCallback done);

  // The last placement cycle's view of the job (see JobExplanation).
  absl::StatusOr<v1::JobExplanation> ExplainJob(const std::string& job_id) const;

  // Checks the cap against the node's devices (OUT_OF_RANGE names the
  // allowed range) and sends it to the node's agent.
  absl::Status SetNodeCap(const std::string& node, const v1::SetCap& cap);

  // Agent streams. OnAgentRegister must come first on every link.
  absl::Status OnAgentRegister(AgentLink* link, const v1::Register& message);
  absl::Status OnAgentMessage(AgentLink* link, const v1::AgentMessage& message);
  void OnAgentDisconnect(AgentLink* link);

  // Periodic work: writing unstored jobs again, node timeouts, log-request
  // timeouts, retries whose backoff has passed, placement.
  void Tick();

  // Whether the store holds the scheduler's state: OK with no unstored jobs
  // when every write succeeded; otherwise the latest write error (e.g.
  // UNAVAILABLE while etcd restarts, FAILED_PRECONDITION "fenced: ..." once
  // this scheduler has been deposed) and how many jobs differ from their
  // stored state. For health checks and metrics.
  struct StoreHealth {
    absl::Status last_error;
    int unstored_jobs = 0;
  };
  StoreHealth GetStoreHealth() const;

  // Blocks until every store write queued before the call is done and its
  // completion has run (e.g. a placement's StartTasks sent). For tests and
  // benchmarks; with inline commits there is never anything to wait for.
  void AwaitStoreWrites();
  // How the writes were grouped (commits, their sizes, what is queued now).
  GroupCommitWriter::Stats StoreWriterStats() const;

  // What the metrics exporter shows: counts, nodes, and the jobs that have
  // run and are not finished or that ended within `job_retention` (so the
  // exporter's per-job series stay bounded). Walks every job under the
  // lock: meant for about one call a second, not per request.
  MetricsSnapshot Metrics(absl::Duration job_retention) const;

 private:
  using Pipelines = std::map<std::string, std::unique_ptr<PlacementPipeline>>;
  // `options.placement_config` is set, and `pipelines` holds its profiles.
  Scheduler(Store* store, const Clock* clock, SchedulerOptions options, Pipelines pipelines);

  absl::Status Load(const Store& source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Queues the job's current state for the store and notifies watchers
  // after a state change.
  void Changed(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SubmitJobAsync's work under the lock, for a valid spec; also run for a
  // submission that waited for an earlier one with its request id.
  void Submit(v1::JobSpec spec, const std::string& request_id, SubmitCallback done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The new job's write is done: the job is kept and queued (stored) or
  // forgotten (not), `done` answers, and submissions with its request id
  // that waited run.
  void Submitted(const v1::Job& job, const absl::Status& stored, const SubmitCallback& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CancelJob's work under the lock; `stored` is notified once the cancel's
  // write is done.
  absl::StatusOr<v1::Job> CancelAndStore(const std::string& job_id, const std::string& reason,
                                         std::shared_ptr<absl::Notification> stored);
  // Queues the job's state and acknowledges the agent's final event about
  // `task_id` (sent from `node`) once the store has it: an agent forgets an
  // acknowledged event, so an earlier acknowledgement would let a crash
  // lose the task's end.
  void StoreThenAck(v1::Job& job, const std::string& node, const std::string& task_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddEvent(v1::Job& job, const std::string& reason,
                const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  v1::Task* FindTask(const std::string& task_id, v1::Job** job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Node NodeToProto(const NodeRecord& node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Holds a task's node resources / gives them back.
  void Allocate(const v1::Job& job, const v1::Task& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const v1::Job& job, const v1::Task& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  using Shape = JobQueue::Shape;
  // Into and out of queue_ (a job whose not_before lies ahead waits in its
  // backoff instead).
  void AddPending(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePending(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the jobs whose backoff has passed.
  void EndBackoffs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PlacePending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The starvation guard: whether `job`, which found no room in this cycle,
  // has waited longer than options_.starvation_guard and would fit once the
  // running tasks end, so that the jobs behind it wait until it is placed.
  // `drained` is the cycle's copy of the snapshot with every task ended,
  // made on first use.
  bool HoldsTheQueue(const v1::Job& job, const PlacementRequest& request,
                     const ClusterSnapshot& snapshot,
                     std::optional<ClusterSnapshot>* drained) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ClusterSnapshot Snapshot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates the tasks and queues the job's write; PlacementStored starts
  // the tasks once the store has it. Returns the error of a write refused
  // outright (the placement is undone), or, with inline commits, of the
  // write itself; OK once the write is queued.
  // `rendezvous_port`: the port replica 0 holds on its node (0: none).
  absl::Status Bind(v1::Job& job, const PlacementResult& result, int32_t rendezvous_port)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A placement whose write is on its way, and what undoes it.
  struct PendingPlacement {
    std::string job_id;
    int32_t attempt = 0;
    std::string where;  // its nodes, for messages
    v1::Job before;
    std::optional<Sharder> sharder_before;
    // Set when the write's outcome has been handled.
    bool done = false;
    absl::Status status;
  };
  // The placement's write is done (or was refused outright). Stored, and
  // the job still wants the attempt: sends the StartTasks. Not stored, and
  // nothing touched the attempt meanwhile: undoes the placement. Otherwise
  // (cancelled, a sibling lost meanwhile): the tasks no agent heard of end
  // here, unstarted, and the job moves on.
  void PlacementStored(PendingPlacement& placement, const absl::Status& stored)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStartTask(const v1::Job& job, const v1::Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The energy brain's power caps: the cap a new task starts at (pinned,
  // from a stored profile, or the top of a profiling run), the profiler's
  // steps as telemetry arrives, and the savings estimate at the job's end.
  double InitialCap(v1::Job& job, v1::Task& task, const v1::Device& gpu)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FeedProfiler(v1::Job& job, v1::Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyCap(v1::Job& job, v1::Task& task, double cap_w, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EstimateSavings(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inference batch size: the largest candidate whose measured p95 latency
  // stays within the job's latency SLO, adjusted live through hints.
  void SizeInferenceBatch(v1::Job& job, v1::Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Per task: batch size -> the latest p95 latency seen at it; last resize.
  absl::flat_hash_map<std::string, std::map<int32_t, double>> latencies_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> last_resize_ ABSL_GUARDED_BY(mu_);
  // Early stop: follows each task's quality reports; after the job's
  // patience without improvement, sends the task a stop hint.
  void WatchQuality(v1::Job& job, v1::Task& task, absl::optional<double> previous)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  EarlyStopWatch early_stop_ ABSL_GUARDED_BY(mu_);
  // Projects the job's energy from its tasks' progress (`total=`) and, over
  // its budget, tightens its caps, or says it cannot be met.
  void EnforceBudget(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  EnergyBudgetGuard budget_ ABSL_GUARDED_BY(mu_);
  // Lowers the cap of GPUs near their throttle temperature.
  void ThermalBackoff(NodeRecord& node, const v1::NodeSample& sample)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sharding: the split of a new attempt, shard reports, replicas that end
  // or are lost, and the hints that move shards between replicas.
  void SplitShards(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FeedSharder(v1::Job& job, const v1::Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReplicaGone(v1::Job& job, const v1::Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyMoves(v1::Job& job, const std::vector<Sharder::Move>& moves)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills the request's learned cost per GPU model (the class's profiles at
  // the cap its objective picks; a profile measured with another GPU count
  // stands in, scaled) and its energy routing (see SchedulerOptions).
  // `static_per_gpu`: per model, the static power per GPU counted by the
  // cap choice.
  void RouteByEnergy(const v1::Job& job, const std::set<std::string>& models,
                     const std::map<std::string, double>& static_per_gpu, absl::Time now,
                     PlacementRequest* request) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Mid-run correction: a training attempt whose projected cost is more than
  // batch_correction_factor x its class's best measured cost moves to the
  // best batch size through a hint (event BatchCorrected).
  void CorrectBatchSize(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the BatchSizer chooses the job's batch size (a training job
  // with a range, not pinned, learning on), and what it is asked.
  bool LearnsBatchSize(const v1::JobSpec& spec) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  BatchRequest BatchRequestOf(const v1::Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The batch size of a new attempt placed on GPUs of `gpu_model` (empty
  // when it has none), and what the class learns at its end (its work ratio
  // for the BatchSizer, its joules per sample for the energy model's runs).
  int32_t ChooseBatchSize(v1::Job& job, const std::string& gpu_model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LearnBatchSize(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The joules per sample of `job_class` on `gpu_model` (empty: without
  // GPUs) that whole runs measured, per batch size (BatchSizer's
  // SampleCosts).
  SampleCosts RunSampleCosts(const std::string& job_class, const std::string& gpu_model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records what a sample of `job_class` cost at `batch_size` on
  // `gpu_model` (empty: without GPUs) in the energy model's run costs, and
  // stores them.
  void RecordRunCost(const std::string& job_class, const std::string& gpu_model,
                     int32_t batch_size, double joules_per_sample)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const v1::Device* TaskGpu(const v1::Task& task) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The model of a placement's first GPU; empty without one.
  std::string GpuModelOf(const ReplicaPlacement& placement) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ApplyTaskEvent(NodeRecord& node, const v1::TaskEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyUsage(NodeRecord& node, const v1::TaskUsage& usage)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CopyUsage, but the task keeps its energy when the telemetry guard
  // refuses the reported one.
  void TakeUsage(const NodeRecord& node, const v1::Job& job, const v1::TaskUsage& usage,
                 v1::Task* task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when the guard found a problem: counted (observer) and logged the
  // first time per node and reason.
  bool Refused(const NodeRecord& node, const absl::optional<TelemetryProblem>& problem)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a task's energy changed from `before_j` joules: the increase, in
  // kWh, into the job's footprint at the carbon intensity and price in
  // force now in its node's region, and into the totals since start.
  void AccountEnergy(v1::Job& job, const v1::Task& task, double before_j)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells the observer of a cap sent with the energy brain's `reason`.
  void CountCap(const std::string& reason) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a task to a final state and releases its resources.
  void EndTask(v1::Job& job, v1::Task& task, v1::TaskState state,
               const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decides the job's state from its latest attempt's tasks.
  void Evaluate(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An attempt ended with `cause` lost or failed: back to PENDING after the
  // restart policy's backoff (true), or FAILED with the reason (false; the
  // caller finishes the job).
  bool RetryOrFail(v1::Job& job, const v1::Task& cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopTask(const v1::Task& task, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStop(NodeRecord& node, const std::string& task_id,
                const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkNodeDown(NodeRecord& node, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const SchedulerOptions options_;
  // One pipeline per placement profile, by name, and the default's.
  const Pipelines pipelines_;
  const PlacementPipeline* const default_pipeline_;
  // The pipeline of the job's placement_profile; null when no profile has
  // that name (a stored job whose profile left the configuration).
  const PlacementPipeline* PipelineFor(const v1::JobSpec& spec) const;
  // "known: energy, first-fit".
  std::string ProfileNames() const;
  // The lowest throttle temperature in the catalog.
  const double coolest_throttle_c_;

  mutable absl::Mutex mu_;
  std::map<std::string, v1::Job> jobs_ ABSL_GUARDED_BY(mu_);
  // Pending jobs: submission order per shape, and retries in backoff.
  JobQueue queue_ ABSL_GUARDED_BY(mu_);
  // Tasks of placements whose write is on its way: no agent has heard of
  // them (an agent that registers meanwhile is not expected to run them).
  absl::flat_hash_set<std::string> unsent_tasks_ ABSL_GUARDED_BY(mu_);
  // Request ids of submissions waiting for the store; a duplicate waits for
  // the first one's outcome.
  // Each holds the submissions with the same id that arrived meanwhile.
  absl::flat_hash_map<std::string, std::vector<std::function<void()>>> submitting_
      ABSL_GUARDED_BY(mu_);
  // SubmitJobRequest.request_id -> job id, for every stored job that has one.
  absl::flat_hash_map<std::string, std::string> request_to_job_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> task_to_job_
      ABSL_GUARDED_BY(mu_);
  // Every node, its stream, heartbeats, telemetry and held resources.
  NodeRegistry nodes_ ABSL_GUARDED_BY(mu_){&options_.gpu_catalog};
  int64_t next_job_number_ ABSL_GUARDED_BY(mu_) = 1;
  // Whether anything placement depends on changed since the last cycle.
  bool placement_dirty_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time next_forced_placement_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::pair<std::string, JobWatcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  int64_t next_watcher_ ABSL_GUARDED_BY(mu_) = 1;
  // Task-output requests waiting for agents.
  LogRequests log_requests_ ABSL_GUARDED_BY(mu_);
  // Power profiles per (job class, GPU model, GPUs), loaded from and saved
  // to the store under "profiles/", and the predictions made from them; and
  // the tasks being profiled now.
  EnergyModel energy_model_ ABSL_GUARDED_BY(mu_);
  struct Profiling {
    std::unique_ptr<CapProfiler> profiler;
    std::string profile_key;
    double applied_cap_w = 0;
  };
  absl::flat_hash_map<std::string, Profiling> profiling_ ABSL_GUARDED_BY(mu_);
  // Batch sizes per job class, stored under "bandits/".
  BatchSizer batch_sizer_ ABSL_GUARDED_BY(mu_){options_.batch_bandit};
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Shard bookkeeping of running sharded jobs (also in Job.shard_state).
  absl::flat_hash_map<std::string, Sharder> sharders_ ABSL_GUARDED_BY(mu_);
  // What `joulectl explain` shows.
  PlacementExplanations explanations_ ABSL_GUARDED_BY(mu_);
  // Since this scheduler was created (MetricsSnapshot's sums).
  double energy_j_total_ ABSL_GUARDED_BY(mu_) = 0;
  double saved_j_total_ ABSL_GUARDED_BY(mu_) = 0;
  double co2e_g_total_ ABSL_GUARDED_BY(mu_) = 0;
  double cost_total_ ABSL_GUARDED_BY(mu_) = 0;
  // Which nodes are suspended, resuming or awake (idle power management).
  NodePowerManager node_power_ ABSL_GUARDED_BY(mu_){options_.node_power};
  // Suspends idle nodes, resumes the ones pending work was placed on, and
  // marks down nodes that did not come back (from Tick).
  void ManageNodePower() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PowerManaged() const {
    return options_.power_control != nullptr &&
           options_.node_power.suspend_after > absl::ZeroDuration();
  }
  // Drops impossible telemetry before it reaches accounting.
  TelemetryGuard telemetry_guard_ ABSL_GUARDED_BY(mu_){options_.gpu_catalog};

  // Every write to the store goes through it (guarded by mu_ itself). Last,
  // so that it is destroyed first: its destructor runs the last
  // completions, which use the state above.
  std::unique_ptr<JobStore> store_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_SCHEDULER_H_
