#ifndef JOULE_SCHEDULER_PLACEMENT_PIPELINE_H_
#define JOULE_SCHEDULER_PLACEMENT_PIPELINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/placement/cluster.h"
#include "scheduler/placement/framework.h"
#include "scheduler/placement/plugin_registry.h"
#include "scheduler/placement/profile.h"

namespace joule {

// A scorer's normalized score for one node, in [0, 100], and its weight.
struct ScoreEntry {
  std::string plugin;
  double score = 0;
  double weight = 1;
};

// One of the best candidates of a cycle, for `explain`.
struct ScoredCandidate {
  std::string node;
  std::vector<ScoreEntry> scores;
  double total_score = 0;
};

// How many nodes one filter turned away, with one of them as an example.
struct RejectionCount {
  std::string plugin;
  PluginCode code = PluginCode::kUnschedulable;
  int64_t nodes = 0;
  // "node-17: 2 free GPUs, a replica needs 4"; for nodes the snapshot's
  // index ruled out without visiting them, what the index says.
  std::string example;
};

// What one replica's cycle looked at: counts, not a verdict per node.
struct CycleSummary {
  int64_t nodes_total = 0;
  // Nodes the filters ran on (the rest were ruled out by a PreFilter's
  // aggregates or the free-GPU index, or not needed once enough feasible
  // nodes were found).
  int64_t nodes_filtered = 0;
  int64_t nodes_feasible = 0;
  // Filtering stopped once enough feasible nodes were found.
  bool sampled = false;
  // kSuccess when a node was chosen; otherwise whether the replica waits
  // (kUnschedulable), can never fit (kUnresolvable), or a plugin failed.
  PluginCode code = PluginCode::kSuccess;
  // Set when a PreFilter settled the replica without visiting any node.
  PluginStatus pre_filter;
  // Most nodes first.
  std::vector<RejectionCount> rejections;
  // Best first, at most the profile's explain_top_candidates.
  std::vector<ScoredCandidate> top;
};

struct ReplicaPlacement {
  std::string node;
  std::vector<int32_t> gpu_indices;
};

// The outcome of placing one job. kPlaced carries one entry per replica;
// kRetryLater (some replica fits nowhere now), kInfeasible (no node could
// ever take a replica) and kError carry the reason.
struct PlacementResult {
  enum class Kind { kPlaced, kRetryLater, kInfeasible, kError };
  Kind kind = Kind::kRetryLater;
  std::vector<ReplicaPlacement> replicas;
  std::string reason;
  // The first replica's cycle, or the cycle of the replica that failed.
  CycleSummary summary;
};

// Runs one placement profile: per replica, PreFilter -> Filter -> PreScore ->
// Score -> Normalize -> select -> reserve, so a gang is placed whole or not
// at all.
//
// Algorithm for one replica:
//  1. PreFilter: each filter may settle the request from the snapshot's
//     aggregates (no node has enough GPUs of the model: unresolvable; none
//     has enough free now: unschedulable) without visiting a node.
//  2. Filter: a GPU request visits only the nodes the snapshot's free-GPU
//     index says have enough free GPUs of the model, fewest free first (best
//     fit: busy nodes before empty ones); other requests visit every node in
//     name order. Each node runs the filters in the profile's order up to the
//     first that turns it away, and the rejection is counted by plugin.
//     Filtering stops once enough feasible nodes are found: the profile's
//     percentage of the cluster (adaptive by default, like kube-scheduler's
//     percentageOfNodesToScore), at least min_feasible_nodes_to_score. The
//     order is fixed, so the sample is deterministic.
//  3. Score: every scorer scores every feasible node; its scores are
//     normalized together onto [0, 100], weighted and summed. The highest
//     total wins; ties go to the node first in name order.
//  4. The winner's GPUs, CPUs and memory are reserved in the snapshot, so the
//     next replica (and the next job of the cycle) sees them taken.
// If a replica finds no node, the replicas already reserved are released:
// kInfeasible if every node turned it away as unresolvable, else
// kRetryLater with the most common rejection.
//
// Thread-compatible: const after construction; Place changes only the
// snapshot it is given.
class PlacementPipeline {
 public:
  struct WeightedScorer {
    std::unique_ptr<ScorePlugin> plugin;
    double weight = 1;
  };

  PlacementPipeline(std::string profile_name, std::vector<std::unique_ptr<FilterPlugin>> filters,
                    std::vector<WeightedScorer> scorers, int percentage_of_nodes_to_score,
                    int min_feasible_nodes_to_score, int explain_top_candidates);

  // The pipeline a validated profile describes.
  static absl::StatusOr<std::unique_ptr<PlacementPipeline>> FromProfile(
      const PlacementProfile& profile, const PluginArgs& args);

  // Places `request` on `snapshot` (Index()ed), reserving what a placed job
  // takes; on any other outcome the snapshot is left as it was.
  PlacementResult Place(const PlacementRequest& request, ClusterSnapshot* snapshot) const;

  // How many feasible nodes a cycle looks for in a cluster of `nodes`.
  int FeasibleNodesToFind(int nodes) const;

  const std::string& profile_name() const { return profile_name_; }
  const std::vector<std::unique_ptr<FilterPlugin>>& filters() const { return filters_; }
  const std::vector<WeightedScorer>& scorers() const { return scorers_; }

 private:
  // One replica: the chosen candidate (nullptr-free on success) and its
  // cycle summary.
  bool PlaceReplica(const PlacementRequest& request, const ClusterSnapshot& snapshot,
                    bool explain, Candidate* chosen, CycleSummary* summary) const;

  std::string profile_name_;
  std::vector<std::unique_ptr<FilterPlugin>> filters_;
  std::vector<WeightedScorer> scorers_;
  int percentage_of_nodes_to_score_;
  int min_feasible_nodes_to_score_;
  int explain_top_candidates_;
  // The profile has the EnergyRouting filter.
  bool routing_ = false;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PIPELINE_H_
