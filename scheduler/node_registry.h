#ifndef JOULE_SCHEDULER_NODE_REGISTRY_H_
#define JOULE_SCHEDULER_NODE_REGISTRY_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/device_catalog.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"
#include "scheduler/placement/cluster.h"

namespace joule {

// The scheduler's end of one agent stream. Implementations must not call
// back into the Scheduler from Send (it is called with the scheduler's lock
// held, on a thread that calls into the Scheduler or on the store writer's
// thread, which sends a placement's StartTasks once it is stored) and must
// not block.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void Send(const v1::SchedulerCommand& command) = 0;
};

// One node the scheduler knows: registered by its agent, or remembered from
// the store (a node that ran stored tasks, or that idle power management
// suspended) until its agent registers.
struct NodeRecord {
  v1::NodeInfo info;
  // The agent's live stream; null while it is closed.
  AgentLink* link = nullptr;
  bool ready = false;
  std::string message;
  // When anything (a heartbeat too) last came from the agent.
  absl::Time last_seen;
  v1::NodeSample last_sample;
  // When the last telemetry arrived, or the node registered before any
  // did; unset for a node known only from stored tasks.
  absl::Time last_telemetry;
  // Active tasks placed here and the GPUs they hold.
  std::set<std::string> task_ids;
  std::set<int32_t> used_gpus;
  // Rendezvous ports held by gangs whose replica 0 runs here.
  std::set<int32_t> used_ports;
  double used_cpus = 0;
  int64_t used_memory_bytes = 0;
  // GPU index -> its model's throttle temperature (from the catalog at
  // registration; the snapshot of every placement cycle needs it).
  absl::flat_hash_map<int32_t, double> throttle_temp_c;

  // Ready and with a live stream: it can take work and commands.
  bool connected() const { return ready && link != nullptr; }
};

// Checks an agent's Register message: INVALID_ARGUMENT naming the field and
// the node.
absl::Status ValidateRegister(const v1::Register& message);

// The GPUs of `sample` a Kubernetes pod holds outside Joule (the agent's
// --pod-resources-socket), by index: "namespace/pod".
std::map<int32_t, std::string> PodHeldGpus(const v1::NodeSample& sample);

// The node registry: every node the scheduler knows, by name, the stream
// each registered, their heartbeats and last telemetry, and the resources
// Joule's tasks hold on each.
//
// 1. An agent's Register makes or refreshes the node's record and binds its
//    stream (a newer stream replaces an older one of the same node).
// 2. Every message refreshes last_seen (Heard); telemetry also becomes the
//    node's last sample (TakeTelemetry). Both say whether anything that
//    placement depends on changed.
// 3. Silent lists the nodes whose agent has been quiet for longer than the
//    heartbeat timeout; the scheduler marks them down and loses their
//    tasks.
// 4. Allocate/Release keep the GPUs, CPUs and memory of Joule's tasks per
//    node; View turns a record into what placement sees.
//
// Records are never removed, so references and pointers to them stay valid
// for the registry's lifetime (the link index holds pointers: telemetry
// from thousands of agents finds its node without a name lookup).
//
// Thread-compatible: owned by the Scheduler and called with its lock held.
class NodeRegistry {
 public:
  // Transparent: lookups by string_view allocate nothing.
  using Map = std::map<std::string, NodeRecord, std::less<>>;

  // `catalog` gives the throttle temperature of each GPU model; it must
  // outlive the registry.
  explicit NodeRegistry(const std::vector<GpuModelSpec>* catalog) : catalog_(catalog) {}

  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  // Binds `link` to the node `info` describes (validated by
  // ValidateRegister), ready and seen at `now`, with its telemetry age
  // counting from `now`. A stream the node registered before is no longer
  // found (FindByLink) and is returned in `*replaced`.
  NodeRecord& Register(AgentLink* link, const v1::NodeInfo& info, absl::Time now,
                       AgentLink** replaced);
  // The node `link` registered, while it is that node's stream; else null.
  NodeRecord* FindByLink(AgentLink* link);
  // The stream closed: the node it served (its link cleared), or null.
  NodeRecord* Disconnect(AgentLink* link);
  // By name; null for a node never known.
  NodeRecord* Find(absl::string_view name);
  const NodeRecord* Find(absl::string_view name) const;
  // The node's record, made (empty, not ready) when it is not known yet:
  // for nodes the store mentions before their agent registers.
  NodeRecord& Remember(const std::string& name);

  // A message came from the node at `now`. Returns true when the node was
  // not ready and is again.
  bool Heard(NodeRecord& node, absl::Time now);
  // Accepted telemetry (already checked by the TelemetryGuard) arrived at
  // node.last_seen: it becomes the node's last sample. Returns true when
  // placement sees the node differently: pods took or let go of GPUs, or
  // its readings had been older than `freshness` (and so unplaceable).
  bool TakeTelemetry(NodeRecord& node, const v1::NodeSample& sample, absl::Duration freshness);
  // The nodes that are ready, or hold tasks without a live stream, and have
  // been silent for longer than `timeout` at `now`; in name order.
  std::vector<NodeRecord*> Silent(absl::Time now, absl::Duration timeout);

  // The node's resources a task holds, and gives back. Release returns the
  // node when the task held resources there, else null.
  void Allocate(const std::string& node, const std::string& task_id,
                const std::vector<int32_t>& gpus, double cpus, int64_t memory_bytes);
  NodeRecord* Release(const std::string& node, const std::string& task_id,
                      const std::vector<int32_t>& gpus, double cpus, int64_t memory_bytes);

  // A rendezvous port for a gang whose replica 0 goes to `node`: the first
  // one from the node's round-robin cursor in [task_port_min,
  // task_port_max] that no task holds (the cursor moves past it). 0 when
  // the node hands out no ports; RESOURCE_EXHAUSTED when all are held.
  // HoldPort/ReleasePort take and give one back.
  absl::StatusOr<int32_t> PickPort(const std::string& node);
  void HoldPort(const std::string& node, int32_t port);
  // A port an earlier task of the node had (from the store, after a
  // restart): the cursor moves past it, so that a retry does not get it
  // again.
  void PortUsedBefore(const std::string& node, int32_t port);
  void ReleasePort(const std::string& node, int32_t port);

  // Whether the node's agent has a live stream.
  bool Reachable(absl::string_view node) const;
  // Sends to the node's agent; false when it has no live stream.
  bool Send(absl::string_view node, const v1::SchedulerCommand& command) const;

  // The GPU with `index` on `node`, or null.
  const v1::Device* GpuAt(absl::string_view node, int32_t index) const;
  // The node's static power attributed to `gpus` of its GPUs (its static
  // power times their share of its GPUs); 0 for an unknown node.
  double StaticShareW(absl::string_view node, int gpus) const;

  // The node as the API shows it; `suspended`: idle power management has
  // it asleep (or on the way there or back).
  static v1::Node ToProto(const NodeRecord& node, bool suspended);
  // What placement sees of the node: free resources, each GPU's model,
  // temperature and pod hold, and `hot` within `thermal_margin_c` of its
  // throttle temperature. Readiness and sleep are the caller's (they
  // depend on idle power management).
  NodeView View(const NodeRecord& node, double thermal_margin_c) const;

  const Map& nodes() const { return nodes_; }
  Map& nodes() { return nodes_; }
  size_t size() const { return nodes_.size(); }

 private:
  const std::vector<GpuModelSpec>* const catalog_;
  Map nodes_;
  absl::flat_hash_map<AgentLink*, NodeRecord*> by_link_;
  // Per node, where PickPort's search starts (round robin: a retry gets a
  // fresh port). Apart from the records, so that a node known only from
  // finished tasks is not made a record.
  absl::flat_hash_map<std::string, int32_t> next_port_;
  // View's per-node scratch (kept to spare an allocation per node per
  // cycle): the last sample's GPU readings by index.
  mutable std::vector<const v1::DeviceSample*> samples_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_NODE_REGISTRY_H_
