#ifndef JOULE_AGENT_METRICS_H_
#define JOULE_AGENT_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "agent/kubelet/pod_energy_metrics.h"
#include "common/device_catalog.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace joule {

// The agent's Prometheus metrics, exactly as README.md ("Metrics" →
// "joule-agent") names them. The Agent feeds them through AgentObserver;
// main's loop feeds the scheduler link's state through ObserveLink; main
// serves registry() with common/metrics_http.h.
//
//  1. Devices: OnDevices fixes each device's labels (node, kind, index,
//     model, source) and its static series (default power limit, the GPU
//     catalog's throttle temperature). Each sample sets the gauges of the
//     devices it read; a device the sample could not read loses its gauges
//     until it reads again (no stale power), but keeps its energy counter.
//  2. Counters from running totals: the agent reports device and task energy
//     cumulatively, and the link its reconnects; each counter keeps the last
//     total it saw and increments by the difference. A total that goes
//     backwards (a device counter reset) adds nothing and becomes the new
//     baseline, so a counter never decreases.
//  3. Cardinality stays bounded: series per device (fixed at start), per
//     source, and per running task; a task's series are removed when it ends
//     (after its final energy was counted). Per-pod GPU series (GPUs
//     Kubernetes pods hold outside Joule) are PodEnergyMetrics', capped and
//     expired there.
//
// Units: Prometheus base units (clocks in Hz, ratios 0–1, Unix seconds).
//
// Thread-safe; state guarded by mu_ (prometheus-cpp's metrics are
// thread-safe themselves; mu_ keeps the bookkeeping and the series in step).
class AgentMetrics : public AgentObserver {
 public:
  // `node`: the `node` label of every series. `catalog`: where GPU models'
  // throttle temperatures come from.
  explicit AgentMetrics(std::string node,
                        std::vector<GpuModelSpec> catalog = GpuCatalog());

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  void OnDevices(const std::vector<v1::Device>& devices) override;
  void OnSample(const v1::NodeSample& sample) override;
  void OnReadError(const std::string& source) override;
  void OnTaskEnergy(const v1::StartTask& task, const v1::Energy& energy) override;
  void OnTaskEnded(const std::string& task_id) override;

  // The scheduler link, polled: whether its stream is up, and its
  // reconnects so far (cumulative).
  void ObserveLink(bool connected, int64_t reconnects);

 private:
  // A device by (kind, index).
  using DeviceKey = std::pair<int, int32_t>;
  struct DeviceState {
    prometheus::Labels labels;
    prometheus::Counter* energy = nullptr;
    std::optional<double> last_energy_j;
  };
  struct TaskState {
    // By component: "gpu", "cpu", "static".
    std::map<std::string, prometheus::Counter*> energy;
    std::map<std::string, std::optional<double>> last_energy_j;
  };

  DeviceState& DeviceFor(const v1::DeviceSample& sample)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the gauges one sample gives a device; nullopt removes a gauge.
  void SetSampleGauges(const prometheus::Labels& labels, const v1::DeviceSample* sample)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  prometheus::Counter& SampleErrors(const std::string& source)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string node_;
  const std::vector<GpuModelSpec> catalog_;
  const std::shared_ptr<prometheus::Registry> registry_;

  // The families; owned by registry_.
  prometheus::Family<prometheus::Gauge>& device_power_;
  prometheus::Family<prometheus::Counter>& device_energy_;
  prometheus::Family<prometheus::Gauge>& device_temperature_;
  prometheus::Family<prometheus::Gauge>& device_throttle_temperature_;
  prometheus::Family<prometheus::Gauge>& device_utilization_;
  prometheus::Family<prometheus::Gauge>& device_memory_utilization_;
  prometheus::Family<prometheus::Gauge>& device_sm_clock_;
  prometheus::Family<prometheus::Gauge>& device_memory_clock_;
  prometheus::Family<prometheus::Gauge>& device_power_limit_;
  prometheus::Family<prometheus::Gauge>& device_power_limit_default_;
  prometheus::Family<prometheus::Gauge>& device_throttled_;
  prometheus::Family<prometheus::Counter>& task_energy_;
  prometheus::Family<prometheus::Counter>& sample_errors_;
  prometheus::Family<prometheus::Gauge>& source_degraded_;
  prometheus::Family<prometheus::Counter>& reconnects_;
  prometheus::Family<prometheus::Gauge>& connected_;
  prometheus::Family<prometheus::Gauge>& last_sample_timestamp_;
  // Fed every sample; guarded by its own lock.
  PodEnergyMetrics pod_energy_;

  mutable absl::Mutex mu_;
  std::map<DeviceKey, DeviceState> devices_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TaskState> tasks_ ABSL_GUARDED_BY(mu_);
  int64_t last_reconnects_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace joule

#endif  // JOULE_AGENT_METRICS_H_
