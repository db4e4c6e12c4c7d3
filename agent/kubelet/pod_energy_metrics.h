#ifndef JOULE_AGENT_KUBELET_POD_ENERGY_METRICS_H_
#define JOULE_AGENT_KUBELET_POD_ENERGY_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "joule/v1/node.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace joule {

// The agent's per-pod GPU series (README, "Metrics" -> "joule-agent"): the
// energy and GPU count of Kubernetes containers that hold GPUs outside Joule,
// from the GPUs telemetry marks DeviceSample.held_by.
//
//  1. Each sample: a held GPU's energy since that GPU's previous sample
//     (what its cumulative energy_j grew by; a total that goes backwards
//     adds nothing) goes to the container holding it at this sample, in
//     joule_pod_gpu_energy_joules_total{node,namespace,pod,container}.
//  2. joule_pod_gpus{...}: the GPUs each container holds at this sample; 0
//     for a container that held some before and holds none now.
//  3. A container's series are removed `retention` after the last sample in
//     which it held a GPU (sample time, so no clock of its own).
//  4. At most `max_series` containers get series of their own. The energy
//     and GPUs of any further container go to one series with
//     pod="_overflow" (namespace and container empty), which it keeps until
//     it is gone for `retention`; each such container is counted once in
//     joule_pod_series_overflow_total{node} (once per sample while more than
//     4 x max_series of them are remembered).
//
// Thread-safe; state guarded by mu_ (prometheus-cpp's metrics are
// thread-safe themselves; mu_ keeps the bookkeeping and the series in step).
class PodEnergyMetrics {
 public:
  struct Options {
    absl::Duration retention = absl::Minutes(10);
    int max_series = 512;
  };

  static constexpr char kOverflowPod[] = "_overflow";

  // Registers the families on `registry`, which must outlive this object;
  // `node` is every series' `node` label.
  PodEnergyMetrics(prometheus::Registry& registry, std::string node,
                   Options options);
  PodEnergyMetrics(prometheus::Registry& registry, std::string node)
      : PodEnergyMetrics(registry, std::move(node), Options()) {}

  void OnSample(const v1::NodeSample& sample);

  // Containers with series of their own now (not counting _overflow).
  int series() const;

 private:
  // (namespace, pod, container).
  using Key = std::tuple<std::string, std::string, std::string>;
  struct Series {
    prometheus::Counter* energy = nullptr;
    prometheus::Gauge* gpus = nullptr;
    absl::Time last_held;
  };

  // The series `key`'s energy goes to at `now`: its own, or _overflow.
  Series& SeriesFor(const Key& key, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Series& Create(const Key& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string node_;
  const Options options_;
  const Key overflow_key_;

  // The families; owned by the registry.
  prometheus::Family<prometheus::Counter>& energy_;
  prometheus::Family<prometheus::Gauge>& gpus_;
  prometheus::Family<prometheus::Counter>& overflow_;

  mutable absl::Mutex mu_;
  // By container, _overflow included.
  std::map<Key, Series> series_ ABSL_GUARDED_BY(mu_);
  // Containers whose energy goes to _overflow, with the last sample they
  // held a GPU in.
  std::map<Key, absl::Time> overflowed_ ABSL_GUARDED_BY(mu_);
  // Each GPU's cumulative energy at its previous sample.
  std::map<int32_t, double> last_energy_j_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_POD_ENERGY_METRICS_H_
