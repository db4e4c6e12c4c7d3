#ifndef JOULE_SCHEDULER_PLACEMENT_CLUSTER_H_
#define JOULE_SCHEDULER_PLACEMENT_CLUSTER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
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

// A GPU new work may go to: not in use, and not near its throttle
// temperature.
inline bool Usable(const GpuView& gpu) { return gpu.free && !gpu.hot; }

// Whether `gpu` is of the model a request names (empty: any model).
inline bool ModelMatches(const std::string& wanted, const GpuView& gpu) {
  return wanted.empty() || wanted == gpu.model;
}

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

  // Usable GPUs (and all GPUs) of `model`; empty `model`: of any model.
  int FreeGpus(const std::string& model) const;
  int TotalGpus(const std::string& model) const;

  // Kept by ClusterSnapshot::Index/Reserve/Unreserve so that FreeGpus need
  // not walk the GPUs (placement visits thousands of nodes per job): the
  // usable GPUs of any model, and whether all GPUs are of one model. -1:
  // not known (a view built by hand), and FreeGpus counts.
  int usable_gpus = -1;
  bool one_model = false;
};

// What the cluster looks like to one placement cycle, with the aggregates
// that let a cycle answer "could any node take this?" without visiting the
// nodes (the PreFilter step of the pipeline).
//
// Usage: fill `now` and `nodes` (in node-name order), call Index() once, then
// change the nodes only through Reserve/Unreserve, which keep the
// aggregates true.
//
// Thread-compatible: one cycle owns its snapshot.
class ClusterSnapshot {
 public:
  // Per GPU model (the key "" counts GPUs of every model): the nodes that
  // have exactly k usable free GPUs of the model (by_free[k], as indices into
  // `nodes`), how many nodes have exactly k GPUs of it in all (by_total[k]),
  // and the most GPUs of the model on one node.
  struct ModelIndex {
    std::vector<absl::btree_set<int>> by_free;
    std::vector<int> by_total;
    int most_per_node = 0;
    // GPUs not in use that take no work: too hot, or held by a pod.
    int64_t hot = 0;
    int64_t held = 0;
    // The first held GPU: "gpu-a GPU 0 by team-a/infer-0".
    std::string held_example;

    // Nodes with at least `gpus` free (or in all) of the model.
    int64_t NodesWithFree(int gpus) const;
    int64_t NodesWithTotal(int gpus) const;
  };

  ClusterSnapshot() = default;
  // A copy is indexed afresh (the index points into its own nodes).
  ClusterSnapshot(const ClusterSnapshot& other);
  ClusterSnapshot& operator=(const ClusterSnapshot& other);
  ClusterSnapshot(ClusterSnapshot&&) = default;
  ClusterSnapshot& operator=(ClusterSnapshot&&) = default;

  absl::Time now;
  std::vector<NodeView> nodes;

  // Builds the aggregates from `nodes`. Call again after changing `nodes`
  // other than by Reserve/Unreserve.
  void Index();

  // The node's position in `nodes`, or -1.
  int Find(const std::string& name) const;

  // Models on at least one node, and "" (any model).
  const std::map<std::string, ModelIndex>& models() const { return models_; }
  // nullptr for a model no node has.
  const ModelIndex* model(const std::string& name) const;
  // The most usable free GPUs of `model` ("" any) on one node now.
  int MostFreeOnOneNode(const std::string& model) const;
  // Largest totals over all nodes.
  double most_cpus() const { return most_cpus_; }
  int64_t most_memory_bytes() const { return most_memory_bytes_; }

  // Marks `gpu_indices` of node `node_index` used and takes `cpus` and
  // `memory_bytes` from it, for one more task; Unreserve gives them back.
  void Reserve(int node_index, const std::vector<int32_t>& gpu_indices, double cpus,
               int64_t memory_bytes);
  void Unreserve(int node_index, const std::vector<int32_t>& gpu_indices, double cpus,
                 int64_t memory_bytes);

 private:
  // Takes node `node_index` out of (sign -1) or puts it into (+1) its
  // free-count buckets, around a change.
  void Count(int node_index, int sign);

  std::map<std::string, ModelIndex> models_;
  // Per node: the ModelIndex of "" and of each of its GPU models, with the
  // model name ("" for any), so that Count need not look them up.
  struct NodeModel {
    const std::string* model;
    ModelIndex* index;
  };
  std::vector<absl::InlinedVector<NodeModel, 3>> node_models_;
  absl::flat_hash_map<std::string, int> by_name_;
  bool indexed_ = false;
  double most_cpus_ = 0;
  int64_t most_memory_bytes_ = 0;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_CLUSTER_H_
