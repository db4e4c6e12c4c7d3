#ifndef JOULE_SCHEDULER_PLACEMENT_FRAMEWORK_H_
#define JOULE_SCHEDULER_PLACEMENT_FRAMEWORK_H_

// The placement framework's extension points, in the shape of the Kubernetes
// scheduling framework: PreFilter (once per replica, from the snapshot's
// aggregates), Filter (per node), PreScore (once per replica, over the
// feasible nodes), Score (per feasible node) and NormalizeScore (once per
// replica, over all the scores of one plugin). PlacementPipeline
// (pipeline.h) runs them; plugins/ holds one plugin per file.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "scheduler/placement/cluster.h"

namespace joule {

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

// What a plugin says about a request or a node, and so what happens next:
//   kSuccess        the node (or the request) passes;
//   kUnschedulable  not now: resources may free up, so the job waits and is
//                   tried again;
//   kUnresolvable   never, as the cluster is built: no waiting frees it,
//                   and the user is told;
//   kError          the plugin could not decide (a bug or bad input).
enum class PluginCode { kSuccess, kUnschedulable, kUnresolvable, kError };

// "UNSCHEDULABLE" etc.
const char* PluginCodeName(PluginCode code);

// A plugin's verdict with its name and, unless kSuccess, the reason.
struct PluginStatus {
  PluginCode code = PluginCode::kSuccess;
  std::string plugin;
  std::string reason;

  bool ok() const { return code == PluginCode::kSuccess; }
};

// The GPUs a replica would get on a node (PickGpus), in index order;
// pointers into the snapshot's node.
using PickedGpus = absl::InlinedVector<const GpuView*, 8>;

// A node that passed every filter for one replica, with the GPUs the replica
// would get there, so that scorers need not pick them again.
struct Candidate {
  int node_index = 0;
  const NodeView* node = nullptr;
  PickedGpus gpus;
};

// The indices of `gpus`.
std::vector<int32_t> GpuIndices(const PickedGpus& gpus);

// Rejects nodes that cannot host one replica now. Pure: depends only on the
// request, the node and the snapshot.
//
// Filter is on the hot path (every node a cycle looks at) and returns only a
// code; Reason formats the explanation, and runs only for the few nodes an
// explanation names.
class FilterPlugin {
 public:
  virtual ~FilterPlugin() = default;
  virtual std::string Name() const = 0;
  // Once per replica, before any node: may settle the request from the
  // snapshot's aggregates (e.g. no node has enough free GPUs). kSuccess
  // lets the per-node filters run; anything else ends the replica's cycle
  // with this status.
  virtual PluginStatus PreFilter(const PlacementRequest&, const ClusterSnapshot&) const {
    return {};
  }
  virtual PluginCode Filter(const PlacementRequest& request, const NodeView& node,
                            const ClusterSnapshot& snapshot) const = 0;
  // Why Filter turns `node` away (called only when it does).
  virtual std::string Reason(const PlacementRequest& request, const NodeView& node,
                             const ClusterSnapshot& snapshot) const = 0;
};

// Scores feasible nodes; higher is better. Score returns the plugin's raw
// measure; Normalize maps one replica's raw scores (one per candidate, in
// candidate order) onto [0, 100], so that weights compare like with like.
class ScorePlugin {
 public:
  // What a scorer computes once per replica before scoring (PreScore), e.g.
  // whether every candidate's cost is known.
  struct State {
    virtual ~State() = default;
  };

  virtual ~ScorePlugin() = default;
  virtual std::string Name() const = 0;
  virtual std::unique_ptr<State> PreScore(const PlacementRequest&,
                                          const std::vector<Candidate>&) const {
    return nullptr;
  }
  // `state` is what PreScore returned for this replica.
  virtual double Score(const PlacementRequest& request, const Candidate& candidate,
                       const State* state) const = 0;
  // The default: raw scores are already on [0, 100] (clamped).
  virtual void Normalize(const State* state, std::vector<double>* scores) const;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_FRAMEWORK_H_
