#ifndef JOULE_SCHEDULER_PLACEMENT_TEST_NODES_H_
#define JOULE_SCHEDULER_PLACEMENT_TEST_NODES_H_

// Fixtures for placement tests: nodes, requests and snapshots.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "scheduler/placement/cluster.h"
#include "scheduler/placement/framework.h"

namespace joule {
namespace testing_nodes {

inline const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// Fluent node builder: NodeBuilder("a").Gpus(4, "V100").Build(). A node
// starts ready, with fresh telemetry, 16 CPUs, 64 GiB and 100 W static.
class NodeBuilder {
 public:
  explicit NodeBuilder(std::string name) {
    node_.name = std::move(name);
    node_.ready = true;
    node_.last_telemetry = kNow;
    node_.total_cpus = node_.free_cpus = 16;
    node_.total_memory_bytes = node_.free_memory_bytes = int64_t{64} << 30;
    node_.static_power_w = 100;
  }
  NodeBuilder& Gpus(int count, const std::string& model, double limit_w = 250) {
    for (int i = 0; i < count; ++i) {
      GpuView gpu;
      gpu.index = static_cast<int32_t>(node_.gpus.size());
      gpu.model = model;
      gpu.power_limit_default_w = limit_w;
      gpu.idle_power_w = 30;
      gpu.temp_c = 40;
      gpu.throttle_temp_c = 85;
      node_.gpus.push_back(gpu);
    }
    return *this;
  }
  NodeBuilder& Used(int32_t gpu_index) {
    node_.gpus[gpu_index].free = false;
    ++node_.running_tasks;
    return *this;
  }
  NodeBuilder& HeldBy(int32_t gpu_index, const std::string& pod) {
    node_.gpus[gpu_index].free = false;
    node_.gpus[gpu_index].held_by = pod;
    return *this;
  }
  NodeBuilder& Asleep() {
    node_.asleep = true;
    return *this;
  }
  NodeBuilder& Busy() {
    ++node_.running_tasks;
    node_.free_cpus -= 1;
    return *this;
  }
  NodeBuilder& Cpus(double total, double free) {
    node_.total_cpus = total;
    node_.free_cpus = free;
    return *this;
  }
  NodeBuilder& Memory(int64_t total, int64_t free) {
    node_.total_memory_bytes = total;
    node_.free_memory_bytes = free;
    return *this;
  }
  NodeBuilder& Temp(int32_t gpu_index, double temp_c) {
    node_.gpus[gpu_index].temp_c = temp_c;
    return *this;
  }
  NodeBuilder& Hot(int32_t gpu_index) {
    node_.gpus[gpu_index].hot = true;
    return *this;
  }
  NodeBuilder& Down() {
    node_.ready = false;
    return *this;
  }
  NodeBuilder& StaticPower(double watts) {
    node_.static_power_w = watts;
    return *this;
  }
  NodeBuilder& LastTelemetry(absl::Time t) {
    node_.last_telemetry = t;
    return *this;
  }
  NodeView Build() const { return node_; }

 private:
  NodeView node_;
};

inline PlacementRequest Request(int32_t gpus, int32_t replicas = 1,
                                const std::string& model = "", double cpus = 1) {
  PlacementRequest request;
  request.job_id = "job-1";
  request.gpus = gpus;
  request.replicas = replicas;
  request.gpu_model = model;
  request.cpus = cpus;
  request.memory_bytes = 1 << 30;
  return request;
}

// An indexed snapshot of `nodes` at kNow.
inline ClusterSnapshot Cluster(std::vector<NodeView> nodes) {
  ClusterSnapshot snapshot;
  snapshot.now = kNow;
  snapshot.nodes = std::move(nodes);
  snapshot.Index();
  return snapshot;
}

}  // namespace testing_nodes
}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_TEST_NODES_H_
