#ifndef JOULE_SCHEDULER_PLACEMENT_H_
#define JOULE_SCHEDULER_PLACEMENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace joule {

// One GPU as placement sees it.
struct GpuView {
  int32_t index = 0;
  std::string model;
  bool free = true;
  double idle_power_w = 0;
  double power_limit_default_w = 0;
  double temp_c = 0;
  double throttle_temp_c = 90;
  // Within the thermal margin of throttle_temp_c: takes no new work.
  bool hot = false;
  // "namespace/pod" of a Kubernetes pod that holds the GPU outside Joule
  // (the agent's DeviceSample.held_by); such a GPU is not free.
  std::string held_by;
};

// A frozen view of one node, taken at the start of a placement cycle.
struct NodeView {
  std::string name;
  bool ready = false;
  // When the node's agent last sent telemetry (heartbeats do not count: a
  // node that only heartbeats has no fresh readings to place by).
  absl::Time last_telemetry;
  std::vector<GpuView> gpus;
  double total_cpus = 0;
  double free_cpus = 0;
  int64_t total_memory_bytes = 0;
  int64_t free_memory_bytes = 0;
  double static_power_w = 0;
  // Tasks currently placed on the node.
  int running_tasks = 0;
  // Suspended by idle power management: placing here wakes it, and the job
  // waits until it is up.
  bool asleep = false;

  int FreeGpus(const std::string& model) const;
  int TotalGpus(const std::string& model) const;
};

// What the cluster looks like to one placement cycle. Plugins read it; only
// the pipeline's reserve step changes it (on its own copy).
struct ClusterSnapshot {
  absl::Time now;
  std::vector<NodeView> nodes;
};

// Resources of one replica and the job's gang size.
struct PlacementRequest {
  std::string job_id;
  int32_t replicas = 1;
  int32_t gpus = 0;
  double cpus = 1;
  int64_t memory_bytes = 0;
  // Empty: any model.
  std::string gpu_model;
  // What the job's class costs per GPU model, learned from its power
  // profiles at the cap its objective picks: GPU joules per sample and
  // samples per second. Empty when the class has not been profiled.
  struct ModelCost {
    double joules_per_sample = 0;
    double samples_per_second = 0;
  };
  std::map<std::string, ModelCost> learned_cost;
  // Energy routing: when not empty, only GPUs of these models take the job
  // now (the models that do its class's work for the fewest joules, while
  // the job may still wait for them); `routing_note` says why, for the
  // nodes the EnergyRouting filter turns away.
  std::set<std::string> routed_models;
  std::string routing_note;
};

// A filter's verdict on one node: empty reason means the node passes.
struct FilterVerdict {
  std::string plugin;
  std::string reason;
};

// A scorer's normalized score for one node, in [0, 100].
struct ScoreEntry {
  std::string plugin;
  double score = 0;
  double weight = 1;
};

// Everything one cycle decided about one node, kept for `explain`.
struct NodeVerdict {
  std::string node;
  std::vector<FilterVerdict> rejected_by;
  std::vector<ScoreEntry> scores;
  double total_score = 0;
};

struct ReplicaPlacement {
  std::string node;
  std::vector<int32_t> gpu_indices;
};

// The outcome of placing one job. kPlaced carries one entry per replica;
// kRetryLater and kInfeasible carry the reason and which plugins said so.
struct PlacementResult {
  enum class Kind { kPlaced, kRetryLater, kInfeasible };
  Kind kind = Kind::kRetryLater;
  std::vector<ReplicaPlacement> replicas;
  std::string reason;
  // Verdicts for the first replica's cycle.
  std::vector<NodeVerdict> verdicts;
};

// Rejects nodes that cannot host one replica now. Pure: depends only on the
// request and the node view.
class FilterPlugin {
 public:
  virtual ~FilterPlugin() = default;
  virtual std::string Name() const = 0;
  // Empty when the node passes, otherwise why not.
  virtual std::string Filter(const PlacementRequest& request,
                             const NodeView& node,
                             const ClusterSnapshot& snapshot) const = 0;
};

// Scores a feasible node in [0, 100]; higher is better.
class ScorePlugin {
 public:
  // What a scorer computes once per replica before the nodes are scored
  // (the Kubernetes scheduling framework's PreScore), e.g. the cheapest
  // node's cost, so that scoring N nodes costs O(N), not O(N^2).
  struct State {
    virtual ~State() = default;
  };

  virtual ~ScorePlugin() = default;
  virtual std::string Name() const = 0;
  virtual std::unique_ptr<State> PreScore(const PlacementRequest&,
                                          const ClusterSnapshot&) const {
    return nullptr;
  }
  // `state` is what PreScore returned for this replica.
  virtual double Score(const PlacementRequest& request, const NodeView& node,
                       const ClusterSnapshot& snapshot, const State* state) const = 0;
};

// The placement pipeline: filter -> score -> select -> reserve, once per
// replica on a private copy of the snapshot, so a gang is placed whole or not
// at all.
//
// Algorithm for one job:
//  1. If no node could host a replica even when empty (capacity, GPU model),
//     the job is infeasible now: kInfeasible with the largest node's shape.
//  2. For each replica: run every filter on every node; score the survivors
//     with every scorer (weighted sum); pick the highest total (ties: node
//     name order); reserve its GPUs, CPUs and memory in the private copy.
//  3. If some replica finds no node, nothing is reserved: kRetryLater with
//     the most common rejection reason.
//
// Thread-compatible: const after construction.
class PlacementPipeline {
 public:
  struct WeightedScorer {
    std::unique_ptr<ScorePlugin> plugin;
    double weight = 1;
  };

  PlacementPipeline(std::vector<std::unique_ptr<FilterPlugin>> filters,
                    std::vector<WeightedScorer> scorers);

  // The default plugins: NodeReady, TelemetryFresh, GpuModel, FreeResources,
  // EnergyRouting; scorers EnergyEfficiency (weight 2), Consolidation (1),
  // ThermalHeadroom (1), GpuFit (3), Awake (5: a node that must be resumed
  // loses to any awake one).
  static std::unique_ptr<PlacementPipeline> Default(
      absl::Duration telemetry_freshness);
  // The same filters and no scorers: the first feasible node in name order
  // (energy-oblivious first fit, the simulator's baselines).
  static std::unique_ptr<PlacementPipeline> FirstFit(
      absl::Duration telemetry_freshness);

  PlacementResult Place(const PlacementRequest& request,
                        const ClusterSnapshot& snapshot) const;

  // Applies a placement to a snapshot (marks GPUs, CPUs, memory used), so
  // later jobs of the same cycle see it.
  static void Reserve(const PlacementRequest& request,
                      const ReplicaPlacement& placement,
                      ClusterSnapshot* snapshot);

 private:
  std::vector<std::unique_ptr<FilterPlugin>> filters_;
  std::vector<WeightedScorer> scorers_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_H_
